"""The throughput log: every ``stats_interval`` one line per source and sink (msg/s in,
events/s out, dropped, lag of the newest event, then the counters), a ``final`` line with the
totals at exit; none with ``stats_interval = 0``.

A scripted run on trio's MockClock whose wall clock starts at a round epoch second, so every
rate and lag is exact.
"""

from __future__ import annotations

import logging

import attrs
import pytest
import trio
import trio.testing

from streamer import Kline, Trade, hookimpl
from streamer._config import load_config_text
from streamer._runtime import Pipeline
from streamer._stats import lag_text

EPOCH = 1_700_000_000  # the wall clock at trio time 0


@pytest.fixture
def wall_clock() -> trio.testing.MockClock:
    clock = trio.testing.MockClock(autojump_threshold=0)
    clock.wall_offset = float(EPOCH)  # read by streamer.clock: wall = EPOCH + trio time
    return clock


def trades(n: int, ts_ms: int, first: int = 0) -> list[Trade]:
    return [Trade("linear", "BTCUSDT", ts_ms, "Buy", "100", "1", str(first + i))
            for i in range(n)]


@attrs.define
class NoOptions:
    pass


class OneBatchSink:
    """Takes its first batch and never comes back (its reader stopped reading)."""

    def __init__(self, config: object, context: object) -> None:
        pass

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        await inbox.get()
        await trio.sleep_forever()


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.one_batch", NoOptions, OneBatchSink)


TOML = """
[streamer]
stats_interval = {interval}
shutdown_timeout = 2

[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
name = "out"
type = "testing.collect"

[[sinks]]
name = "stuck"
type = "test.one_batch"
queue_size = 1
overflow = "drop_oldest"
"""


@pytest.fixture
def runtime_lines():  # type: ignore[no-untyped-def]
    """The ``stats`` and ``final`` lines the runtime logs, with the trio time of each."""
    seen: list[tuple[float, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith(("stats ", "final ")):
                seen.append((trio.current_time(), message))

    handler = Keep()
    runtime_log = logging.getLogger("streamer.runtime")
    runtime_log.addHandler(handler)
    level = runtime_log.level
    runtime_log.setLevel(logging.INFO)
    yield seen
    runtime_log.removeHandler(handler)
    runtime_log.setLevel(level)


async def _scripted_run(plugin_manager, interval: int) -> Pipeline:  # type: ignore[no-untyped-def]
    config = load_config_text(TOML.format(interval=interval), plugin_manager, environ={})
    pipeline = Pipeline(config, plugin_manager)
    source = pipeline.node("src")
    wall_ms = EPOCH * 1000

    async def script() -> None:
        # One message at a time, so the order in which the sinks take them is scripted too.
        await trio.sleep_until(1)  # 3 trades, exchange time 250 ms before
        source.push(trades(3, wall_ms + 750))
        await trio.sleep_until(2)
        source.push(trades(2, wall_ms + 1_750, 3))
        await trio.sleep_until(4)
        source.push(trades(1, wall_ms + 3_500, 5))  # one message, lag 0.5 s now
        await trio.sleep_until(15)
        source.push(trades(4, wall_ms + 14_900, 6))
        await trio.sleep_until(25)
        source.finish()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(script)
        await pipeline.run()
    return pipeline


async def test_stats_lines_of_a_scripted_run(wall_clock, plugin_manager, register_plugin,
                                             runtime_lines):
    register_plugin(Plugin())
    await _scripted_run(plugin_manager, 10)
    assert runtime_lines == [
        # 0-10 s: 3 messages of 6 trades; the newest trade is from 3.5 s.
        (10, "stats src: 0.3 msg/s in, 0.6 events/s out, 0 dropped, lag 6.500 s"),
        (10, "stats out: 0.3 msg/s in, 0.6 events/s out, 0 dropped, lag 6.500 s"),
        # took the first message, then holds one: the third pushed the second out
        (10, "stats stuck: 0.3 msg/s in, 0.3 events/s out, 2 dropped, lag 9.250 s; "
             "inbox_dropped_batches=1, inbox_dropped_events=2, stalls=1"),
        # 10-20 s: one message of 4 trades at 15 s, from 14.9 s
        (20, "stats src: 0.1 msg/s in, 0.4 events/s out, 0 dropped, lag 5.100 s"),
        (20, "stats out: 0.1 msg/s in, 0.4 events/s out, 0 dropped, lag 5.100 s"),
        (20, "stats stuck: 0.1 msg/s in, 0.0 events/s out, 1 dropped, lag 19.250 s; "
             "inbox_dropped_batches=2, inbox_dropped_events=3, stalls=1"),
        # The source ends at 25 s; the stuck sink is cut off at the 2 s shutdown deadline
        # holding the 3 events it took and the 4 queued: 3 + 7 dropped in all.
        (27, "final src: 4 msg in, 10 events out, 0 dropped, lag 12.100 s"),
        (27, "final out: 4 msg in, 10 events out, 0 dropped, lag 12.100 s"),
        (27, "final stuck: 4 msg in, 3 events out, 10 dropped, lag 26.250 s; "
             "inbox_dropped_batches=2, inbox_dropped_events=3, lost_at_shutdown=7, stalls=1"),
    ]


async def test_stats_interval_0_logs_only_the_final_lines(wall_clock, plugin_manager,
                                                          register_plugin, runtime_lines):
    register_plugin(Plugin())
    await _scripted_run(plugin_manager, 0)
    assert [line for _, line in runtime_lines] == [
        "final src: 4 msg in, 10 events out, 0 dropped, lag 12.100 s",
        "final out: 4 msg in, 10 events out, 0 dropped, lag 12.100 s",
        "final stuck: 4 msg in, 3 events out, 10 dropped, lag 26.250 s; "
        "inbox_dropped_batches=2, inbox_dropped_events=3, lost_at_shutdown=7, stalls=1",
    ]


def test_lag_of_a_kline_is_from_its_close_and_of_a_plugin_event_unknown() -> None:
    now_ms = EPOCH * 1000
    closed = Kline("linear", "BTCUSDT", 60_000, now_ms - 90_000, 1, 1, 1, 1, 0, 0)
    still_open = Kline("linear", "BTCUSDT", 60_000, now_ms - 30_000, 1, 1, 1, 1, 0, 0,
                       closed=False)
    assert lag_text(closed, now_ms) == "lag 30.000 s"
    assert lag_text(still_open, now_ms) == "lag 0.000 s"
    assert lag_text(NoOptions(), now_ms) == "lag -"  # type: ignore[arg-type]
    assert lag_text(None, now_ms) == "lag -"
