"""The fake's order-book pushes for benches: a set number of pushes a second or flat out
(``run_books(rate=...)``), books filled to their whole depth (``full_books``), the
microsecond stamp in ``seq`` (``stamp``) and the simulator's command line for them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import trio
from bybit.harness import Collector, make_source, run_source
from bybit.test_simulator import _OPEN_CLIENTS, WS

from streamer import Book
from streamer.book import OrderBook
from streamer_bybit.simulator import FakeBybit
from streamer_bybit.simulator.books import BookFeed, run_books
from streamer_bybit.simulator.connection import HIGH_WATER

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture
async def fake_full():
    fake = FakeBybit(linear_symbols=SYMBOLS, spot_symbols=[], seed=3, full_books=True,
                     non_trading_instruments=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        yield fake
        fake.stop()
        nursery.cancel_scope.cancel()


@pytest.fixture
async def ws_clients():
    """Closes the WS clients a test opened (test_simulator's client keeps a list of them)."""
    yield
    while _OPEN_CLIENTS:
        await _OPEN_CLIENTS.pop().aclose()


def _consumer(collector: Collector, symbol: str) -> OrderBook:
    """The book a consumer builds from the events alone (every delta must follow on)."""
    book = OrderBook()
    for e in collector.of(Book):
        if e.symbol == symbol:
            apply = book.snapshot if e.kind == "snapshot" else book.delta
            assert apply(e.bids, e.asks, e.update_id) == "ok"
    return book


def test_full_books_hold_their_whole_depth_and_never_more():
    feed = BookFeed(5, full=True)
    book = feed.book("linear", "orderbook.1000.BTCUSDT")
    assert (len(book.bids), len(book.asks)) == (1000, 1000)
    for i in range(3000):
        feed.push("linear", "orderbook.1000.BTCUSDT", i)
        assert len(book.bids) <= 1000 and len(book.asks) <= 1000
    assert len(book.bids) == len(book.asks) == 1000  # a delete brings the next level in
    # Without ``full`` a deep book stays small (the tests' messages).
    small = BookFeed(5).book("linear", "orderbook.1000.BTCUSDT")
    assert (len(small.bids), len(small.asks)) == (60, 60)


async def _pusher(nursery: trio.Nursery, fake: FakeBybit, rate: float) -> trio.CancelScope:
    """``run_books(fake, rate=rate)`` started in its own cancel scope (cancel it to stop the
    pushes while the source goes on reading)."""
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await run_books(fake, rate=rate, task_status=task_status)

    await nursery.start(run)
    return scope


async def _received_every_push(fake: FakeBybit, collector: Collector) -> None:
    """Until the source emitted every book message the fake sent (a snapshot a topic)."""
    sent = sum(fake.books.pushes.values()) + len(fake.books.books)
    with trio.fail_after(20):
        await collector.wait_for(lambda ev: sum(isinstance(e, Book) for e in ev) >= sent)


async def test_a_set_rate_pushes_round_robin_from_the_start(fake_full, autojump_clock):
    """256 pushes/s over two depth-200 books for 0.5 s of virtual time less half a push:
    exactly 128 pushes, 64 a book, and the source's books equal the fake's full books."""
    collector = Collector()
    source = make_source(fake_full, symbols=SYMBOLS, streams=["orderbook"], book_depth=200,
                         coalesce_ms=0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        start = trio.current_time()
        pushing = await _pusher(nursery, fake_full, 256)
        await trio.sleep_until(start + 0.5 - 1 / 512)
        pushing.cancel()
        assert fake_full.books.pushes == {("linear", "orderbook.200.BTCUSDT"): 64,
                                          ("linear", "orderbook.200.ETHUSDT"): 64}
        await _received_every_push(fake_full, collector)
        nursery.cancel_scope.cancel()
    snapshots = [e for e in collector.of(Book) if e.kind == "snapshot"]
    assert [(len(e.bids), len(e.asks)) for e in snapshots] == [(200, 200), (200, 200)]
    assert source.context.metrics["book_gaps"] == source.context.metrics["book_overfull"] == 0
    for s in SYMBOLS:
        assert _consumer(collector, s).top() == fake_full.books.book(
            "linear", f"orderbook.200.{s}").levels()


async def test_flat_out_pushes_round_robin_and_the_books_stay_exact(fake_full):
    """Real time (flat out keeps the fake busy; a jumping clock would judge the books
    stale): 3,000 messages as fast as the socket takes them, every one applied in order.
    Staleness is not what this test checks: at depth 50 a book is stale after 60 ms without
    a message, which a loaded machine's scheduling alone can cause (a resubscribe then
    drops deltas and the count below never arrives), so the limit here is 30 s."""
    collector = Collector()
    source = make_source(fake_full, symbols=SYMBOLS, streams=["orderbook"], book_depth=50,
                         coalesce_ms=0, book_stale_s=30.0)
    async with trio.open_nursery() as nursery:
        await run_source(nursery, source, collector)
        pushing = await _pusher(nursery, fake_full, 0)
        with trio.fail_after(30):
            await collector.wait_for(lambda ev: sum(isinstance(e, Book) for e in ev) >= 3000)
        pushing.cancel()
        await _received_every_push(fake_full, collector)
        nursery.cancel_scope.cancel()
    a, b = fake_full.books.pushes.values()
    assert abs(a - b) <= 1 and a + b >= 2998
    assert source.context.metrics["book_gaps"] == source.context.metrics["book_stale"] == 0
    for s in SYMBOLS:
        assert _consumer(collector, s).top() == fake_full.books.book(
            "linear", f"orderbook.50.{s}").levels()


async def test_flat_out_to_a_client_that_stops_reading_stays_bounded(fake_full, ws_clients,
                                                                    autojump_clock):
    """A subscriber that never reads: the pushes stop once its queue is over the high
    water mark (one batch of at most 512 messages more), they do not pile up."""
    with trio.fail_after(30):
        ws = await WS.connect(fake_full.ws_url("linear"))
        await ws.send({"op": "subscribe", "args": ["orderbook.1000.BTCUSDT"]})
        async with trio.open_nursery() as nursery:
            await _pusher(nursery, fake_full, 0)
            await trio.sleep(1)
            key = ("linear", "orderbook.1000.BTCUSDT")
            held = fake_full.books.pushes[key]
            await trio.sleep(5)
            assert fake_full.books.pushes[key] == held
            (conn,) = fake_full.connections
            assert conn._out_bytes <= HIGH_WATER + 512 * 2000
            nursery.cancel_scope.cancel()


async def test_stamp_puts_the_build_microsecond_in_seq():
    fake = FakeBybit(linear_symbols=SYMBOLS, spot_symbols=[], stamp=True)
    collector = Collector()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        source = make_source(fake, symbols=SYMBOLS, streams=["orderbook"], coalesce_ms=0)
        await run_source(nursery, source, collector)
        t0 = time.time_ns() // 1000
        for _ in range(5):
            fake.push_book("linear", "orderbook.50.BTCUSDT")
        t1 = time.time_ns() // 1000
        with trio.fail_after(10):
            await collector.wait_for(lambda ev: sum(isinstance(e, Book) for e in ev) >= 7)
        nursery.cancel_scope.cancel()
    deltas = [e for e in collector.of(Book) if e.kind == "delta"]
    assert len(deltas) == 5
    seqs = [e.seq for e in deltas]
    assert all(t0 <= s <= t1 for s in seqs) and seqs == sorted(seqs)


@pytest.mark.timeout(60)
async def test_the_command_line_serves_full_books_flat_out_without_trades(ws_clients):
    """``--no-trades --book-rate 0 --full-books``: a subscriber of a trade topic and a
    depth-200 book gets the whole-depth snapshot, then book deltas only."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer_bybit.simulator", "--symbols", "2", "--no-trades",
         "--book-rate", "0", "--full-books", "--duration", "30"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(await trio.to_thread.run_sync(proc.stdout.readline))
        with trio.fail_after(20):
            ws = await WS.connect(info["ws_linear"])
            await ws.send({"op": "subscribe",
                           "args": ["publicTrade.BTCUSDT", "orderbook.200.BTCUSDT"]})
            messages = [await ws.recv() for _ in range(2001)]
    finally:
        proc.terminate()
        proc.wait(10)
    assert messages[0]["success"] is True
    snapshot, *deltas = messages[1:]
    assert snapshot["type"] == "snapshot"
    assert (len(snapshot["data"]["b"]), len(snapshot["data"]["a"])) == (200, 200)
    assert {m["topic"] for m in deltas} == {"orderbook.200.BTCUSDT"}
    assert [m["data"]["u"] for m in deltas] == list(range(2, 2001))
