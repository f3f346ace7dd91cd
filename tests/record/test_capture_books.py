"""A live run with order books and book faults, captured; its replay emits the same book
events and the same book gaps (the resubscribe after each fault is in the capture)."""

from __future__ import annotations

import trio
import trio.testing
from bybit.harness import Collector, make_source, run_source

from streamer import Book
from streamer_bybit.simulator import FakeBybit

from .helpers import replay_run

OUT = """
[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["bybit"]
"""


async def _live(capture) -> Collector:
    collector = Collector()
    fake = FakeBybit(linear_symbols=["BTCUSDT", "ETHUSDT"], seed=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        source = make_source(fake, symbols=["BTCUSDT", "ETHUSDT"], streams=["orderbook"],
                             book_depth=50, coalesce_ms=0, book_stale_s=5.0,
                             capture_dir=str(capture), recover_gaps=False)
        await run_source(nursery, source, collector)
        for fault in ("drop", "crossed", "reset", "duplicate", None):
            if fault is not None:
                fake.books.inject("linear", "orderbook.50.BTCUSDT", fault)
            for _ in range(4):
                fake.push_book("linear", "orderbook.50.BTCUSDT")
                fake.push_book("linear", "orderbook.50.ETHUSDT")
                await trio.sleep(0.3)  # 1.2 s per fault: past the resubscribe spacing
        await trio.sleep(0.5)
        assert source.context.metrics["book_resyncs"] == 3
        fake.stop()
        nursery.cancel_scope.cancel()
    return collector


def test_a_replay_emits_the_live_runs_books_and_book_gaps(tmp_path):
    live = trio.run(_live, tmp_path, clock=trio.testing.MockClock(autojump_threshold=0))
    replayed, pipeline = replay_run(tmp_path, OUT)
    live_books = live.of(Book)
    assert len(live_books) > 40
    assert [e for e in replayed if isinstance(e, Book)] == live_books
    metrics = pipeline.metrics()["bybit"]
    assert metrics["book_gaps"] == 2 and metrics["book_crossed"] == 1
    assert metrics["book_resets"] == 1
    assert metrics.get("unknown_topic", 0) == 0 and metrics.get("malformed", 0) == 0
