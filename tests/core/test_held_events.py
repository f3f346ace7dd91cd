"""A sink with a buffer of its own tells the core what it holds (``streamer.HoldsEvents``):
that, not the batch it took last, is what the core counts when the sink is cut off at the
shutdown deadline or disabled; a restart counts nothing (the sink keeps its buffer).

All on trio's MockClock; the sink holds every event it takes until its inbox closes.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from streamer import FatalError, Trade, hookimpl
from streamer.testing import running_pipeline


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", str(100 + i), "1", str(i))


@attrs.define
class HoldingOptions:
    #: Raise once (a restart) when the buffer reaches this many events.
    fail_at: int = 0
    #: Raise FatalError when the buffer reaches this many events.
    fatal_at: int = 0
    #: When the inbox closes, block for good instead of writing the buffer.
    stuck: bool = False


class HoldingSink:
    """Keeps what it takes and "writes" it (into ``written``) when its inbox closes."""

    def __init__(self, config: HoldingOptions, context: object) -> None:
        self.config = config
        self.buffer: list[Trade] = []
        self.written: list[Trade] = []
        self.failed = False

    def held_events(self) -> int:
        return len(self.buffer)

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        while events := await inbox.get():
            self.buffer.extend(events)
            if len(self.buffer) == self.config.fail_at and not self.failed:
                self.failed = True
                raise RuntimeError("a write failed")
            if len(self.buffer) == self.config.fatal_at:
                raise FatalError("the server rejected the credentials")
        if self.config.stuck:
            await trio.sleep_forever()
        self.written += self.buffer
        self.buffer = []


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.holding", HoldingOptions, HoldingSink)


@pytest.fixture
def pm(plugin_manager, register_plugin):  # type: ignore[no-untyped-def]
    register_plugin(Plugin(), "holding-plugin")
    return plugin_manager


def pipe(options: str) -> str:
    return f"""
[streamer]
shutdown_timeout = 2

[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[sinks]]
name = "held"
type = "test.holding"
{options}
"""


async def push_one_by_one(pipeline, sink: HoldingSink, n: int) -> None:  # type: ignore[no-untyped-def]
    """Push ``n`` trades, each taken alone (so the batch in the sink's hands is one)."""
    for i in range(n):
        pipeline.node("src").push([trade(i)])
        while len(sink.buffer) + len(sink.written) < i + 1:
            await trio.sleep(0.01)


async def test_a_sink_cut_off_at_the_deadline_counts_what_it_holds(pm, autojump_clock) -> None:
    async with running_pipeline(pipe("stuck = true"), pm) as pipeline:
        await push_one_by_one(pipeline, pipeline.node("held"), 5)
        pipeline.node("src").push([trade(5), trade(6)])
        stop_at = trio.current_time()
    assert trio.current_time() - stop_at == pytest.approx(2.0, abs=1e-9)  # the deadline
    # Its last take was the closed inbox's []: only its own count says it held all 7.
    assert pipeline.losses() == {"held": {"lost_at_shutdown": 7}}


async def test_a_restart_keeps_the_buffer_and_counts_nothing(pm, autojump_clock) -> None:
    async with running_pipeline(pipe("fail_at = 2"), pm) as pipeline:
        sink = pipeline.node("held")
        await push_one_by_one(pipeline, sink, 3)
    assert pipeline.nodes["held"].context.metrics["restarts"] == 1
    assert sink.written == [trade(0), trade(1), trade(2)]
    assert pipeline.losses() == {}


async def test_a_disabled_sink_counts_its_buffer_once(pm, autojump_clock) -> None:
    async with running_pipeline(pipe('fatal_at = 2\non_fatal = "disable"'), pm) as pipeline:
        await push_one_by_one(pipeline, pipeline.node("held"), 2)
        while not pipeline.nodes["held"].context.metrics["disabled"]:
            await trio.sleep(0.01)
        pipeline.node("src").push([trade(2), trade(3), trade(4)])
    # The 2 it held when disabled and the 3 sent after; none again at shutdown.
    assert pipeline.losses() == {"held": {"lost_after_stop": 5}}
