"""``books.top``: the top N of each book, at most every ``interval_ms`` (MockClock), through a
real pipeline (testing.scripted -> books.top -> testing.collect)."""

from __future__ import annotations

import trio

from streamer import Book, StreamGap
from streamer.testing import config_errors, running_pipeline

TOML = """
[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[transforms]]
name = "top"
type = "books.top"
inputs = ["src"]
depth = 2
interval_ms = 100

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["top"]
"""


def snap(u: int, bids, asks, symbol: str = "BTCUSDT", ts: int = 1) -> Book:
    return Book("linear", symbol, "snapshot", bids, asks, u, ts)


def delta(u: int, bids, asks, symbol: str = "BTCUSDT", ts: int = 1) -> Book:
    return Book("linear", symbol, "delta", bids, asks, u, ts)


async def test_top_n_at_most_every_interval_and_the_latest_after_it(plugin_manager,
                                                                   autojump_clock):
    with trio.fail_after(30):
        await _top_n_at_most_every_interval(plugin_manager)


async def _top_n_at_most_every_interval(plugin_manager) -> None:
    async with running_pipeline(TOML, plugin_manager) as pipeline:
        src, out = pipeline.node("src"), pipeline.node("out")
        src.push([snap(5, [["100", "1"], ["99", "2"], ["98", "3"]], [["101", "1"]], ts=10)])
        await out.wait_for(1)
        assert out.events == [snap(5, [["100", "1"], ["99", "2"]], [["101", "1"]], ts=10)]
        t0 = trio.current_time()
        await trio.sleep(0.01)
        src.push([delta(6, [["100", "0"]], [], ts=11)])
        src.push([delta(7, [], [["102", "4"]], ts=12)])
        await out.wait_for(2)
        # Both changes in one top, emitted by the timer 100 ms after the first top.
        assert trio.current_time() - t0 == 0.1
        assert out.events[1] == snap(7, [["99", "2"], ["98", "3"]], [["101", "1"], ["102", "4"]],
                                     ts=12)
        await trio.sleep(1)
        assert len(out.events) == 2  # nothing changed: nothing emitted
        src.push([delta(8, [["99", "5"]], [], ts=13)])  # due at once: its last top is old
        await out.wait_for(3)
        assert trio.current_time() - t0 == 1.1
        assert out.events[2].bids == [["99", "5"], ["98", "3"]]
        pipeline.shutdown()


async def test_a_delta_that_does_not_follow_or_a_book_gap_stops_the_book(plugin_manager,
                                                                        autojump_clock):
    async with running_pipeline(TOML, plugin_manager) as pipeline:
        src, out = pipeline.node("src"), pipeline.node("out")
        src.push([snap(5, [["100", "1"]], [["101", "1"]])])
        await out.wait_for(1)
        src.push([delta(7, [["100", "9"]], [])])  # 6 is missing
        src.push([delta(8, [["100", "8"]], [])])
        await trio.sleep(1)
        assert len(out.events) == 1
        assert pipeline.node("top").context.metrics["book_top_gaps"] == 1
        src.push([snap(20, [["90", "1"]], [["91", "1"]])])
        await out.wait_for(2)
        assert out.events[1] == snap(20, [["90", "1"]], [["91", "1"]])
        src.push_gap(StreamGap("linear", ("BTCUSDT",), 1, data_type="book"))
        src.push([delta(21, [["90", "2"]], [])])
        await trio.sleep(1)
        assert len(out.events) == 2  # the source's gap dropped the book
        src.push([snap(1, [], [])])  # a reset with empty sides
        await out.wait_for(3)
        assert out.events[2] == snap(1, [], [])
        pipeline.shutdown()


async def test_a_symbol_whose_stream_ended_gets_its_last_top_and_is_forgotten(
        plugin_manager, autojump_clock):
    async with running_pipeline(TOML, plugin_manager) as pipeline:
        src, out, top = pipeline.node("src"), pipeline.node("out"), pipeline.node("top")
        src.push([snap(5, [["100", "1"]], [["101", "1"]]),
                  snap(9, [["10", "1"]], [["11", "1"]], symbol="ETHUSDT")])
        await out.wait_for(2)
        t0 = trio.current_time()
        src.push([delta(6, [["100", "2"]], [])])  # its top waits for the interval
        src.push_gap(StreamGap("linear", ("BTCUSDT",), 1, closed=True, ended=True))
        await out.wait_for(3)
        # Sent with the end, not 100 ms later; nothing of it is kept, ETHUSDT's book is.
        assert trio.current_time() == t0
        assert out.events[2] == snap(6, [["100", "2"]], [["101", "1"]])
        assert list(top.books) == [("linear", "ETHUSDT")]
        pipeline.shutdown()


def test_bad_options_are_reported_with_their_paths(plugin_manager):
    toml = TOML.replace("depth = 2", "depth = 0").replace("interval_ms = 100",
                                                          "interval_ms = -1")
    assert config_errors(toml, plugin_manager) == [
        "s.toml: transforms[0].depth: expected 1 to 1000, got 0",
        "s.toml: transforms[0].interval_ms: expected 0 to 3600000, got -1",
    ]
