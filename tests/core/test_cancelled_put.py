"""A source cancelled at shutdown while a full ``overflow = "block"`` inbox holds its batch:
that sink counts the batch lost (``inbox_cancelled_events``, once), the sinks and transforms
after it on the route still get it where there is room, and every event the source passed on
is either taken by each sink or counted.

All on trio's MockClock (``autojump_clock``): the sink that never takes waits for its inbox
to close, so virtual time jumps to the shutdown.
"""

from __future__ import annotations

import logging

import attrs
import pytest
import trio

from streamer import BaseTransform, Trade, hookimpl
from streamer.testing import running_pipeline


def trade(i: int) -> Trade:
    return Trade("linear", "BTCUSDT", 1_700_000_000_000 + i, "Buy", str(100 + i), "1", str(i))


@attrs.define
class NoOptions:
    pass


class NeverTakes:
    """Never takes from its inbox: a sink stuck before its first ``get`` (its producers wait,
    ``overflow = "block"``); ends when the inbox closes."""

    def __init__(self, config: object, context: object) -> None:
        pass

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
        task_status.started()
        await inbox.wait_closed()


class Passing(BaseTransform):
    """Hands every batch on as it is."""

    def __init__(self, config: object, context: object) -> None:
        self.seen = 0

    def process(self, batch):  # type: ignore[no-untyped-def]
        self.seen += len(batch)
        return list(batch)


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("test.never_takes", NoOptions, NeverTakes)

    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("test.pass", NoOptions, Passing)


@pytest.fixture
def pm(plugin_manager, register_plugin):  # type: ignore[no-untyped-def]
    register_plugin(Plugin(), "cancelled-put-plugin")
    return plugin_manager


HEAD = """
[streamer]
shutdown_timeout = 2

[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false
"""

FULL = """
[[sinks]]
name = "full"
type = "test.never_takes"
overflow = "block"
queue_size = 2
"""


async def push_until_held(pipeline, n: int) -> None:  # type: ignore[no-untyped-def]
    """Push ``n`` one-trade batches; return once the source waits on the full inbox (2 queued,
    the third put waiting, the rest still in the source's own channel)."""
    for i in range(n):
        pipeline.node("src").push([trade(i)])
    await trio.sleep(1)
    assert pipeline.route_of("src").events == 3
    assert len(pipeline.nodes["full"].inbox) == 2


async def test_a_put_cancelled_at_shutdown_is_counted_once(pm, autojump_clock, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamer")
    toml = HEAD + FULL + '\n[[sinks]]\nname = "out"\ntype = "testing.collect"\n'
    async with running_pipeline(toml, pm) as pipeline:
        await push_until_held(pipeline, 5)
        assert len(pipeline.node("out").events) == 2  # "out" comes after "full" on the route
    emitted = pipeline.route_of("src").events
    assert emitted == 3
    # The put of trade 2 was cancelled: "full" counts it (and the 2 it never took); "out",
    # after it on the route, still got it (its inbox had room).
    assert [t.trade_id for t in pipeline.node("out").events] == ["0", "1", "2"]
    assert pipeline.nodes["full"].inbox.cancelled_events == 1
    assert pipeline.losses() == {"full": {"inbox_cancelled_events": 1, "lost_at_shutdown": 2}}
    assert pipeline.lost_total() == emitted  # so `streamer run` exits 3
    messages = caplog.messages
    assert "events lost: 3 in all; full inbox_cancelled_events=1, lost_at_shutdown=2" in messages
    # "msg in" of a sink: the batches queued into its inbox (the cancelled one was not).
    assert ("final full: 2 msg in, 0 events out, 3 dropped, lag -; inbox_cancelled_events=1, "
            "lost_at_shutdown=2") in messages
    (final_out,) = [m for m in messages if m.startswith("final out: ")]
    assert final_out.startswith("final out: 3 msg in, 3 events out, 0 dropped, "), final_out


async def test_the_route_after_a_cancelled_put_still_gets_the_batch(pm, autojump_clock) -> None:
    """The full sink fed by a transform: the cancellation comes out of that transform's
    emit; the transform after it and its sink still get the batch, nothing else counts it."""
    toml = HEAD + """
[[transforms]]
name = "first"
type = "test.pass"
inputs = ["src"]

[[transforms]]
name = "second"
type = "test.pass"
inputs = ["src"]
""" + FULL + """inputs = ["first"]

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["second"]
"""
    async with running_pipeline(toml, pm) as pipeline:
        await push_until_held(pipeline, 5)
        assert len(pipeline.node("out").events) == 2
    assert pipeline.node("second").seen == 3
    assert [t.trade_id for t in pipeline.node("out").events] == ["0", "1", "2"]
    assert pipeline.route_of("second").events == 3
    assert pipeline.losses() == {"full": {"inbox_cancelled_events": 1, "lost_at_shutdown": 2}}


async def test_a_completed_put_is_not_counted(pm, autojump_clock) -> None:
    """The blocked put completes when the sink takes: nothing is lost, nothing counted."""
    toml = HEAD + '\n[[sinks]]\nname = "out"\ntype = "testing.collect"\nqueue_size = 1\n' \
        'delay = 1.0\n'
    async with running_pipeline(toml, pm) as pipeline:
        for i in range(5):
            pipeline.node("src").push([trade(i)])
        await pipeline.node("out").wait_for(5)
    assert pipeline.nodes["out"].inbox.cancelled_events == 0
    assert pipeline.losses() == {}
