"""The cheap book path: :class:`streamer.book.BookSide` applied a message side at a time (and a
snapshot side sorted once) against a plain reference, and the reader's one-decode path for
``orderbook`` messages against its general path, message for message."""

from __future__ import annotations

import logging
import random

import msgspec
import pytest

from streamer import Event, Metrics, RateLimitedLog
from streamer.book import BookSide, OrderBook
from streamer_bybit.book_keeper import BOOK_PREFIX, BookKeeper
from streamer_bybit.decode import MessageDecoder
from streamer_bybit.simulator.books import FAULTS, BookFeed
from streamer_bybit.tickers import PriceTracker, TickerBook

#: A few prices, each in more than one text (one level per number).
PRICES = [("100", "100.0", "100.00"), ("99.5", "99.50"), ("101",), ("0.25", ".25"),
          ("1e3", "1000", "1000.0"), ("250.125",), ("7",), ("98.75",)]
SIZES = ["1", "2.5", "0.001", "10", "0", "0.0", "0.000"]


def _reference(side: dict[float, tuple[str, str]], bids: bool) -> list[list[str]]:
    return [list(side[k]) for k in sorted(side, reverse=bids)]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("bids", [True, False])
def test_side_after_random_messages_equals_a_sorted_reference(seed, bids):
    rng = random.Random(seed)
    side = BookSide(bids=bids)
    ref: dict[float, tuple[str, str]] = {}
    for _ in range(300):
        levels = [[rng.choice(rng.choice(PRICES)), rng.choice(SIZES)]
                  for _ in range(rng.randrange(0, 6))]
        if rng.random() < 0.1:  # a snapshot's side: replaced whole
            side.replace(levels)
            ref.clear()
        else:
            side.apply(levels)
        for price, size in levels:
            if float(size) == 0.0:
                ref.pop(float(price), None)
            else:
                ref[float(price)] = (price, size)
        assert side.levels() == _reference(ref, bids)
        assert len(side) == len(ref)
        assert side.best() == (None if not ref else max(ref) if bids else min(ref))
        assert side.levels(2) == _reference(ref, bids)[:2]


@pytest.mark.parametrize("level", [["x", "1"], ["100", "-1"], ["0", "1"], ["nan", "1"],
                                   ["100", "inf"], ["100", "nan"], ["-5", "0"], ["100"],
                                   ["100", "1", "2"]])
def test_a_bad_level_raises_on_either_path_and_a_replaced_side_is_left_empty(level):
    side = BookSide(bids=True)
    side.apply([["90", "1"]])
    with pytest.raises(ValueError):
        side.apply([["95", "1"], level])
    assert side.levels() == [["95", "1"], ["90", "1"]]  # the levels before it stay applied
    with pytest.raises(ValueError):
        side.replace([["80", "1"], level])
    assert side.levels() == [] and len(side) == 0 and side.best() is None


def test_crossed_comes_before_overfull_and_overfull_only_with_a_depth():
    book = OrderBook()
    assert book.snapshot([["100", "1"], ["99", "1"]], [["101", "1"]], 1, depth=2) == "ok"
    assert book.delta([["98", "1"]], [], 2) == "ok"
    book.snapshot([["100", "1"], ["99", "1"]], [["101", "1"]], 1, depth=2)
    assert book.delta([["98", "1"]], [], 2, depth=2) == "overfull"
    book.snapshot([["100", "1"], ["99", "1"]], [["101", "1"]], 1, depth=2)
    assert book.delta([["101", "1"], ["98", "1"]], [], 2, depth=2) == "crossed"
    assert book.snapshot([["1", "1"], ["2", "1"], ["3", "1"]], [], 1, depth=2) == "overfull"
    assert book.snapshot([["100", "1"], ["99", "1"]], [["100", "1"]], 1, depth=1) == "crossed"


def _decoder(metrics: Metrics, symbols: list[str]) -> MessageDecoder:
    log = RateLimitedLog(logging.getLogger("test.book_fast_path"))
    prices = PriceTracker("linear")
    decoder = MessageDecoder("linear", metrics, log,
                             TickerBook("linear", prices, emit_tickers=False, price_field=None),
                             prices)
    decoder.books = BookKeeper("linear", 50, symbols, 1.0, metrics, log, "test#0")
    return decoder


def _payloads(seed: int, symbols: list[str]) -> list[bytes]:
    """Snapshots, deltas and every fault of the simulator, plus messages the keeper refuses
    (a level that is no number, a topic of another depth or symbol, an unknown type, a
    symbol not subscribed, a data that does not decode)."""
    rng = random.Random(seed)
    feed = BookFeed(seed=seed)
    topics = [f"orderbook.50.{s}" for s in symbols]
    out = [msgspec.json.encode(feed.subscribed("linear", t, 1)) for t in topics]
    for ts in range(2, 400):
        topic = rng.choice(topics)
        r = rng.random()
        if r < 0.05:
            feed.inject("linear", topic, rng.choice(FAULTS))
        if r < 0.03:  # the resubscribe's snapshot
            out.append(msgspec.json.encode(feed.subscribed("linear", topic, ts)))
            continue
        for m in feed.push("linear", topic, ts):
            if 0.05 <= r < 0.06:
                m = {**m, "data": {**m["data"], "b": [["x", "1"]]}}
            elif 0.06 <= r < 0.065:
                m = {**m, "topic": "orderbook.200." + m["data"]["s"]}
            elif 0.065 <= r < 0.07:
                m = {**m, "topic": topics[0] if topic != topics[0] else topics[1]}
            elif 0.07 <= r < 0.075:
                m = {**m, "type": "partial"}
            elif 0.075 <= r < 0.08:
                m = {**m, "topic": "orderbook.50.XYZUSDT",
                     "data": {**m["data"], "s": "XYZUSDT"}}
            elif 0.08 <= r < 0.085:
                m = {**m, "data": {**m["data"], "u": "seven"}}
            out.append(msgspec.json.encode(m))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_one_decode_path_equals_the_general_path(seed):
    symbols = ["AUSDT", "BUSDT", "CUSDT"]
    payloads = _payloads(seed, symbols)
    assert all(p.startswith(BOOK_PREFIX) for p in payloads)
    got: list[tuple[list[Event], dict[str, float], list[object], list[str]]] = []
    for general in (False, True):
        metrics = Metrics()
        decoder = _decoder(metrics, symbols)
        assert decoder.books is not None
        out: list[Event] = []
        for i in range(0, len(payloads), 7):
            read = payloads[i:i + 7]
            if general:  # a leading space: valid JSON, not the fast path's prefix
                read = [b" " + p for p in read]
            decoder.decode_read(read, out)
        books = decoder.books
        got.append((out, metrics.snapshot(), books.take_gaps(),
                    [f"{s}:{sb.status}:{sb.book.top()}" for s, sb in books.books.items()]))
    fast, general = got
    assert fast == general
    counted = fast[1]
    assert counted.get("book_gaps", 0) > 0 and counted.get("malformed", 0) > 0
    assert sum(1 for e in fast[0] if getattr(e, "kind", None) == "delta") > 50
