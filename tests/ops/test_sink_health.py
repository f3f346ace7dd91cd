"""Sinks report readiness through ``context.health``: Redis reachable or not (with the
cause), the console's stream, the WebSocket listener."""

from __future__ import annotations

import logging

import trio
from redis_server import RedisServer

from streamer import Context, Inbox, Trade
from streamer._metrics import Metrics
from streamer_redis.sink import RedisSink, RedisSinkConfig


def make_context(name: str) -> Context:
    return Context(name=name, type=name, logger=logging.getLogger(f"streamer.sink.{name}"),
                   metrics=Metrics())


async def wait_until(predicate, step: float = 0.01) -> None:
    while not predicate():
        await trio.sleep(step)


def problems(context) -> list[str]:
    return context.health.problems(trio.current_time(), None)


async def test_redis_sink_is_not_ready_while_redis_is_down() -> None:
    server = RedisServer().start()
    try:
        server.kill()
        context = make_context("redis")
        sink = RedisSink(RedisSinkConfig(host="127.0.0.1", port=server.port,
                                         reconnect_initial=0.05, reconnect_max=0.1,
                                         socket_connect_timeout=1.0), context)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                inbox = Inbox("redis", 100)
                await nursery.start(sink.run, inbox)
                (problem,) = problems(context)
                assert problem.startswith(f"redis://127.0.0.1:{server.port}/0: unreachable: ")
                assert "ConnectionError" in problem
                await inbox.put([Trade("linear", "BTCUSDT", 1, "Buy", "1", "1", "a")])
                await wait_until(lambda: context.metrics["write_failures"] >= 1)
                assert "write failed" in problems(context)[0]
                server.restart()
                await wait_until(lambda: context.metrics["written_events"] == 1)
                assert problems(context) == []
                assert context.health.reported
                inbox.close()
    finally:
        server.stop()


async def test_console_and_websocket_sinks_report_their_part() -> None:
    from streamer_console.config import ConsoleConfig
    from streamer_console.sink import ConsoleSink
    from streamer_websocket.config import WebSocketConfig
    from streamer_websocket.sink import WebSocketSink

    console_ctx, ws_ctx = make_context("console"), make_context("websocket")
    console = ConsoleSink(ConsoleConfig(stream="stderr"), console_ctx)
    ws = WebSocketSink(WebSocketConfig(port=0), ws_ctx)
    assert console_ctx.health.states() == [] and ws_ctx.health.states() == []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            inboxes = [Inbox("console", 10), Inbox("websocket", 10)]
            await nursery.start(console.run, inboxes[0])
            await nursery.start(ws.run, inboxes[1])
            assert [s.part for s in console_ctx.health.states()] == ["stderr"]
            assert problems(console_ctx) == [] and problems(ws_ctx) == []
            for inbox in inboxes:
                inbox.close()
    assert problems(ws_ctx) == ["listener: not listening"]
