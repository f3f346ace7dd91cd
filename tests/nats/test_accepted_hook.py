"""The core's acceptance hook (``Inbox.mark`` / ``wait_accepted``, ``emit.accepted()``)
that the nats source relies on to ack only what every sink has handled."""

from __future__ import annotations

import pytest
import trio

from streamer import Trade
from streamer._inbox import Inbox
from streamer.testing import running_pipeline


def _batch(i: int) -> list[Trade]:
    return [Trade("linear", "BTCUSDT", i, "Buy", "1", "1", str(i))]


async def test_accepted_once_the_sink_comes_back_for_more(autojump_clock):
    inbox = Inbox("s", maxsize=10)
    await inbox.put(_batch(1))
    await inbox.put(_batch(2))
    mark = inbox.mark()
    accepted_at = []

    async def waiter() -> None:
        await inbox.wait_accepted(mark)
        accepted_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        assert len(await inbox.get()) == 2  # taken, still being handled
        await trio.sleep(1)
        assert not accepted_at
        back_at = trio.current_time()
        nursery.start_soon(inbox.get)  # back for more: the two are accepted
        await trio.sleep(1)
        assert accepted_at == [back_at]
        inbox.close()


async def test_dropped_and_closed_count_as_accepted(autojump_clock):
    inbox = Inbox("s", maxsize=1, overflow="drop_oldest")
    await inbox.put(_batch(1))
    mark = inbox.mark()
    await inbox.put(_batch(2))  # drops batch 1
    with trio.fail_after(1):
        await inbox.wait_accepted(mark)
    mark = inbox.mark()
    inbox.close()
    with trio.fail_after(1):
        await inbox.wait_accepted(mark)


async def test_emit_accepted_waits_for_every_sink(plugin_manager, autojump_clock):
    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
name = "fast"
type = "testing.collect"
inputs = ["src"]

[[sinks]]
name = "slow"
type = "testing.collect"
inputs = ["src"]
delay = 5.0
"""
    async with running_pipeline(toml, plugin_manager) as pipeline:
        emit = pipeline._emits["src"]
        await emit(_batch(1))
        start = trio.current_time()
        await emit.accepted()
        # accepted the instant the slow sink is back for more, after its 5 s
        assert trio.current_time() - start == pytest.approx(5.0, abs=1e-6)
        assert pipeline.node("slow").events == _batch(1)
