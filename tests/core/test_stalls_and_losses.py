"""A sink that stops taking from its inbox is reported; every event not handed to a sink is
counted; one sink's fatal error can disable it alone; summaries are never rate-limited.

All on trio's MockClock (``autojump_clock``): the stuck sink sleeps forever, so virtual time
jumps straight to the watchdog's and the shutdown deadline's wake-ups.
"""

from __future__ import annotations

import logging

import attrs
import pytest
import trio

from streamer import FatalError, Trade, hookimpl
from streamer._config import load_config_text
from streamer._logs import RateLimitFilter
from streamer._runtime import Pipeline
from streamer.testing import running_pipeline


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", str(100 + i), "1", str(i))


@attrs.define
class NoOptions:
    pass


class StuckSink:
    """Takes one batch, then blocks for good in its "write" (a reader that never reads)."""

    def __init__(self, config: object, context: object) -> None:
        self.busy_with: str | None = None
        self.took = 0  # events in the batch it blocks on (batches may merge in the inbox)

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        self.took = len(await inbox.get())
        self.busy_with = "a test write that never returns"
        await trio.sleep_forever()


class FatalOnFirstSink:
    def __init__(self, config: object, context: object) -> None:
        pass

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        await inbox.get()
        raise FatalError("the server rejected the credentials")


class BufferingSink:
    """Keeps the newest 2 events of its input in its own buffer and counts the older ones
    with ``metrics.lost`` (like the Redis sinks' ``max_buffer`` while Redis is down)."""

    def __init__(self, config: object, context) -> None:  # type: ignore[no-untyped-def]
        self.metrics = context.metrics
        self.buffer: list[Trade] = []

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        while events := await inbox.get():
            self.buffer.extend(events)
            if len(self.buffer) > 2:
                self.metrics.lost("buffer_dropped_events", len(self.buffer) - 2)
                del self.buffer[:-2]


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.stuck", NoOptions, StuckSink)
        register("test.fatal_first", NoOptions, FatalOnFirstSink)
        register("test.buffering", NoOptions, BufferingSink)


@pytest.fixture
def pm(plugin_manager, register_plugin):  # type: ignore[no-untyped-def]
    register_plugin(Plugin(), "stall-plugin")
    return plugin_manager


def pipe(stuck: str, *, shutdown_timeout: float = 5.0) -> str:
    return f"""
[streamer]
shutdown_timeout = {shutdown_timeout}

[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[sinks]]
name = "stuck"
{stuck}

[[sinks]]
name = "out"
type = "testing.collect"
"""


async def test_a_stuck_sink_is_reported_and_the_others_go_on(pm, autojump_clock, caplog) -> None:
    toml = pipe('type = "test.stuck"\noverflow = "drop_oldest"\nqueue_size = 2\n'
                "stall_timeout = 3\n")
    async with running_pipeline(toml, pm) as pipeline:
        for i in range(10):
            pipeline.node("src").push([trade(i)])
        await pipeline.node("out").wait_for(10)
        started = trio.current_time()
        # Idle since the first take (now): at the 3 s tick it has waited exactly
        # stall_timeout, not more, so the 4 s tick of the watchdog reports it.
        stalls = pipeline.nodes["stuck"].context.metrics
        await trio.sleep_until(started + 4 - 0.001)
        assert stalls["stalls"] == 0
        await trio.sleep(0.002)
        assert stalls["stalls"] == 1
        await trio.sleep(30)  # one report per stall, not one per tick
        assert pipeline.nodes["stuck"].context.metrics["stalls"] == 1
        pipeline.node("src").push([trade(10)])
        await pipeline.node("out").wait_for(11)
        shutdown_at = trio.current_time()
    # The stuck sink was cut off at the shutdown deadline, whatever it was doing.
    assert trio.current_time() - shutdown_at == 5.0
    (report,) = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert report.startswith("sink 'stuck' stalled: nothing taken from its inbox for 3.0s "
                             "with 2 batch(es) (2 events) waiting; it is blocked in a test "
                             "write that never returns; its oldest batches are dropped"), report
    # All 11 events are accounted for: those held by the stuck write and the 2 batches queued
    # at the deadline are lost at shutdown, the rest were dropped by the full inbox.
    losses = pipeline.losses()["stuck"]
    assert losses["lost_at_shutdown"] == pipeline.node("stuck").took + 2
    assert losses["inbox_dropped_events"] + losses["lost_at_shutdown"] == 11, losses
    assert pipeline.lost_total() == 11
    assert any(r.getMessage() == f"events lost: 11 in all; stuck inbox_dropped_events="
               f"{losses['inbox_dropped_events']}, lost_at_shutdown={losses['lost_at_shutdown']}"
               for r in caplog.records)


async def test_a_stuck_blocking_sink_holds_producers_but_not_the_shutdown(
    pm, autojump_clock, caplog
) -> None:
    toml = pipe('type = "test.stuck"\noverflow = "block"\nqueue_size = 2\nstall_timeout = 2\n',
                shutdown_timeout=1.5)
    async with running_pipeline(toml, pm) as pipeline:
        for i in range(10):
            pipeline.node("src").push([trade(i)])
        await trio.sleep(10)
        # overflow = "block" was chosen: the source waits, so the other sink waits too.
        assert len(pipeline.node("out").events) < 10
        assert pipeline.nodes["stuck"].context.metrics["stalls"] == 1
        shutdown_at = trio.current_time()
    assert trio.current_time() - shutdown_at == 1.5
    assert any("its producers wait for it (overflow = \"block\")" in r.getMessage()
               for r in caplog.records)
    # Every event the stuck sink accepted is counted, and the batch the source was held on
    # (its put cancelled by the shutdown); "out" is fed after "stuck" and still got that one.
    assert pipeline.losses() == {"stuck": {"lost_at_shutdown": len(pipeline.node("out").events)
                                           - 1, "inbox_cancelled_events": 1}}


async def test_on_fatal_disable_stops_that_sink_alone(pm, autojump_clock, caplog) -> None:
    toml = pipe('type = "test.fatal_first"\non_fatal = "disable"\n')
    async with running_pipeline(toml, pm) as pipeline:
        pipeline.node("src").push([trade(0)])
        while not pipeline.nodes["stuck"].context.metrics["disabled"]:
            await trio.sleep(0.1)
        for i in range(1, 6):
            pipeline.node("src").push([trade(i)])
        await pipeline.node("out").wait_for(6)
        await trio.sleep(60)
        assert pipeline.node("out").flushed is False  # still running
    assert [e.trade_id for e in pipeline.node("out").events] == [str(i) for i in range(6)]
    assert pipeline.losses() == {"stuck": {"lost_after_stop": 6}}
    assert any(r.getMessage().startswith("sink 'stuck' disabled (on_fatal = \"disable\"): the "
                                         "server rejected the credentials") for r in caplog.records)


async def test_on_fatal_stop_is_the_default_and_counts_what_was_left(pm, autojump_clock) -> None:
    config = load_config_text(pipe('type = "test.fatal_first"\n'), pm, environ={})
    assert config.sinks[0].on_fatal == "stop"
    pipeline = Pipeline(config, pm)
    with pytest.RaisesGroup(pytest.RaisesExc(FatalError), flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(pipeline.run)
            pipeline.node("src").push([trade(0), trade(1)])
    assert pipeline.losses()["stuck"] == {"lost_at_shutdown": 2}


async def test_the_batch_of_a_failed_sink_is_counted(pm, autojump_clock) -> None:
    toml = pipe('type = "testing.collect"\nfail_times = 1\n')
    async with running_pipeline(toml, pm) as pipeline:
        pipeline.node("src").push([trade(0), trade(1)])
        await pipeline.node("out").wait_for(2)
        pipeline.node("src").push([trade(2)])
        await pipeline.node("stuck").wait_for(1)
    assert pipeline.losses() == {"stuck": {"lost_on_restart": 2}}


async def test_a_sinks_own_losses_are_losses_of_the_run(pm, autojump_clock, caplog) -> None:
    caplog.set_level(logging.ERROR, "streamer.runtime")
    async with running_pipeline(pipe('type = "test.buffering"\n'), pm) as pipeline:
        for i in range(5):
            pipeline.node("src").push([trade(i)])
        await pipeline.node("out").wait_for(5)
        await trio.sleep(1)  # the buffering sink takes its input on its own task
    assert pipeline.node("stuck").buffer == [trade(3), trade(4)]
    assert pipeline.losses() == {"stuck": {"buffer_dropped_events": 3}}
    assert pipeline.lost_total() == 3  # what makes `streamer run` exit with status 3
    assert pipeline.metrics()["stuck"]["buffer_dropped_events"] == 3
    assert "events lost: 3 in all; stuck buffer_dropped_events=3" in caplog.messages


async def test_summaries_are_never_rate_limited(plugin_manager, autojump_clock) -> None:
    names = [f"sink{i}" for i in range(8)]
    toml = '[[sources]]\nname = "src"\ntype = "testing.scripted"\n' + "".join(
        f'[[sinks]]\nname = "{n}"\ntype = "testing.collect"\nfail_times = 1\n' for n in names)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    handler.addFilter(RateLimitFilter())
    runtime_log = logging.getLogger("streamer.runtime")
    runtime_log.addHandler(handler)
    level = runtime_log.level
    runtime_log.setLevel(logging.INFO)
    try:
        async with running_pipeline(toml, plugin_manager) as pipeline:
            pipeline.node("src").push([trade(0)])  # each sink fails once: counters to report
            await trio.sleep(1)
            pipeline.node("src").push([trade(1)])
            for n in names:
                await pipeline.node(n).wait_for(1)
    finally:
        runtime_log.removeHandler(handler)
        runtime_log.setLevel(level)
    finals = [line for line in seen if line.startswith("final ")]
    assert all(any(line.startswith(f"final {n}:") for line in finals) for n in names), seen


@attrs.define
class SlowFlushOptions:
    shutdown_timeout: float = 3.0


class SlowFlushSink:
    """Needs its whole own ``shutdown_timeout`` to flush, then reports."""

    def __init__(self, config: SlowFlushOptions, context: object) -> None:
        self.config = config
        self.reported = False

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        while await inbox.get():
            pass
        await trio.sleep(self.config.shutdown_timeout)
        self.reported = True


async def test_a_sink_gets_its_own_shutdown_timeout_to_report(
    plugin_manager, register_plugin, autojump_clock
) -> None:
    class SlowPlugin:
        @staticmethod
        @hookimpl
        def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
            register("test.slow_flush", SlowFlushOptions, SlowFlushSink)

    register_plugin(SlowPlugin(), "slow-flush")
    toml = ('[streamer]\nshutdown_timeout = 1\n[[sources]]\nname = "src"\n'
            'type = "testing.scripted"\n[[sinks]]\nname = "slow"\ntype = "test.slow_flush"\n'
            "shutdown_timeout = 3\n")
    async with running_pipeline(toml, plugin_manager) as pipeline:
        assert pipeline.shutdown_timeout() == 3.0 + 1.0
    assert pipeline.node("slow").reported
    assert pipeline.lost_total() == 0
