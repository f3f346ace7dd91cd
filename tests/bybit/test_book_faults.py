"""Every fault the fake's books can inject is detected and recovered, over random fault
schedules (hypothesis, derandomized): the fake's messages (as JSON bytes) go through the
source's decoder and :class:`BookKeeper`; a resync is answered as Bybit answers a
resubscribe (a fresh snapshot). After each fault's recovery the source's book, and a book
built only from the emitted events, equal the fake's true book exactly; between the message
that broke a book and its fresh snapshot no book event is emitted."""

from __future__ import annotations

import logging

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer import Book, Metrics, RateLimitedLog
from streamer.book import OrderBook
from streamer_bybit.book_depths import stale_after_s
from streamer_bybit.book_keeper import BookKeeper
from streamer_bybit.decode import MessageDecoder
from streamer_bybit.simulator.books import FAULTS, BookFeed
from streamer_bybit.tickers import PriceTracker, TickerBook

#: The counter that must move by exactly one for each fault.
DETECTED_BY = {"drop": "book_gaps", "duplicate": "book_gaps", "swap": "book_gaps",
               "crossed": "book_crossed", "silent": "book_stale", "reset": "book_resets",
               "delist": "book_resets"}
#: Faults after which the book is dropped and resubscribed (a reset is itself a snapshot).
RESYNCED = {"drop", "duplicate", "swap", "crossed", "silent"}


class Model:
    """The fake and the source's decode + keeper, with the connection's resync as Bybit
    answers it, on a virtual clock."""

    def __init__(self, depth: int, seed: int) -> None:
        self.feed = BookFeed(seed)
        self.topic = f"orderbook.{depth}.BTCUSDT"
        self.metrics = Metrics()
        log = RateLimitedLog(logging.getLogger("test.book_faults"))
        self.stale_after = stale_after_s("linear", depth)
        # Resubscribes not spaced: each fault is followed by its resubscribe at once.
        self.keeper = BookKeeper("linear", depth, ["BTCUSDT"], self.stale_after, self.metrics,
                                 log, "bybit#0", resync_spacing=0.0)
        prices = PriceTracker("linear")
        tickers = TickerBook("linear", prices, emit_tickers=False, price_field=None)
        self.decoder = MessageDecoder("linear", self.metrics, log, tickers, prices)
        self.decoder.books = self.keeper
        self.now = 0.0
        self.ts = 1_000
        self.events: list[Book] = []
        self.consumer = OrderBook()
        self.keeper.arm(0.0)
        self._deliver([self.feed.subscribed("linear", self.topic, self.ts)])

    def _deliver(self, payloads: list[dict]) -> None:
        out: list = []
        self.keeper.now = self.now
        self.decoder.decode_read([msgspec.json.encode(p) for p in payloads], out)
        for e in out:
            # What a consumer of the events holds: every delta follows on, nothing crossed.
            assert isinstance(e, Book)
            if e.kind == "snapshot":
                assert self.consumer.snapshot(e.bids, e.asks, e.update_id) == "ok"
            else:
                assert self.consumer.delta(e.bids, e.asks, e.update_id) == "ok"
            self.events.append(e)
        sb = self.keeper.books["BTCUSDT"]
        if sb.status == "live":
            assert self.consumer.top() == sb.book.top()
        while self.keeper.resync:
            assert self.keeper.take_resync(self.now)
            # Bybit's answer to unsubscribe + subscribe: the subscribe's snapshot.
            self.keeper.resubscribed("BTCUSDT", self.now)
            self._deliver([self.feed.subscribed("linear", self.topic, self.ts)])

    def push(self) -> None:
        self.now += self.stale_after / 4
        self.ts += 1
        self.keeper.stale(self.now)
        self._deliver(self.feed.push("linear", self.topic, self.ts))

    def wait_stale(self) -> None:
        self.now += self.stale_after * 2
        self.keeper.stale(self.now)
        self._deliver([])

    def true_top(self):
        return self.feed.book("linear", self.topic).levels()


def _run(depth: int, seed: int, schedule: list[str]) -> None:
    m = Model(depth, seed)
    for _ in range(3):
        m.push()
    for fault in schedule:
        counter = DETECTED_BY[fault]
        before = m.metrics[counter]
        resyncs = m.metrics["book_resyncs"]
        emitted = len(m.events)
        m.feed.inject("linear", m.topic, fault)
        m.push()
        if fault == "silent":
            m.push()
            m.wait_stale()
        else:
            m.push()  # the next delta shows a dropped one
        assert m.metrics[counter] == before + 1, (fault, schedule)
        if fault in RESYNCED:
            assert m.metrics["book_resyncs"] == resyncs + 1
            after = m.events[emitted:]
            # What came out since the fault: deltas before the break (a duplicate's first
            # copy), then the fresh snapshot first of all after it.
            snapshots = [i for i, e in enumerate(after) if e.kind == "snapshot"]
            assert snapshots, fault
            # Between the fault and the fresh snapshot nothing, but the duplicate's first
            # copy (a good delta, before the copy that broke the book).
            assert len(after[:snapshots[0]]) == (1 if fault == "duplicate" else 0), fault
        for _ in range(2):
            m.push()
        assert m.keeper.books["BTCUSDT"].book.top() == m.true_top(), (fault, schedule)
        assert m.consumer.top() == m.true_top(), (fault, schedule)
    assert m.metrics["malformed"] == 0


@settings(max_examples=60, derandomize=True, deadline=None)
@given(schedule=st.lists(st.sampled_from(FAULTS), min_size=1, max_size=12),
       seed=st.integers(0, 1000), depth=st.sampled_from([50, 200, 1000]))
def test_every_injected_fault_is_detected_and_the_book_recovers_exactly(schedule, seed, depth):
    _run(depth, seed, schedule)


def test_each_fault_kind_once():
    _run(50, 1, list(FAULTS))


def test_no_book_event_between_the_break_and_the_fresh_snapshot():
    m = Model(50, 3)
    m.push()
    m.feed.inject("linear", m.topic, "drop")
    m.push()  # nothing sent
    n = len(m.events)
    # The next delta is u + 2: dropped, and the resubscribe's snapshot is what comes out.
    m.push()
    assert [e.kind for e in m.events[n:]] == ["snapshot"]
    assert m.events[n].bids, m.events[n]


def test_a_reset_leaves_no_level_of_the_old_book():
    m = Model(50, 5)
    for _ in range(40):  # levels far from the middle, which a fresh fill does not have
        m.push()
    old = {p for p, _ in m.consumer.top()[0]}
    m.feed.inject("linear", m.topic, "reset")
    m.push()
    fresh_bids = m.consumer.top()[0]
    assert m.consumer.top() == m.true_top()
    assert old - {p for p, _ in fresh_bids}  # the old book had levels the new one has not
    m.feed.inject("linear", m.topic, "delist")
    m.push()
    assert m.consumer.top() == ([], []) == m.true_top()
