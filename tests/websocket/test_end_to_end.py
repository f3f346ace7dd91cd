"""Issue 7, done-when: fake Bybit -> bybit.linear -> klines.from_trades -> websocket sink,
watched with ``streamer tail``, shows live klines."""

from __future__ import annotations

import io

import trio

from streamer import clock
from streamer.testing import running_pipeline
from streamer_websocket import tail
from streamer_websocket.sink import WebSocketSink
from websocket.test_tail import parse

PIPE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT"]
streams = ["trades"]
url = "{ws}"
rest_url = "{rest}"
recover_gaps = false

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
waiter = false
first_candle = "partial"

[[sinks]]
name = "wss"
type = "websocket"
inputs = ["klines"]
port = 0
"""


async def test_tail_shows_live_klines_from_the_fake_bybit(fake_bybit, plugin_manager) -> None:
    fake = fake_bybit
    toml = PIPE.format(ws=fake.ws_url("linear"), rest=fake.rest_url)
    out, err = io.StringIO(), io.StringIO()
    status: list[int] = []
    with trio.fail_after(30):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            sink = pipeline.node("wss")
            assert isinstance(sink, WebSocketSink)
            await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            args = parse("--url", sink.url, "--type", "klines", "--count", "3")

            async def watch() -> None:
                status.append(await tail.tail(args, out, err))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await sink.wait_for_clients(1)
                (client,) = sink.clients
                while client.subscription is None:
                    await trio.sleep(0.001)
                now = clock.now_ms()
                # Trades two minutes apart close candles; each trade also updates the open one.
                for i in range(6):
                    fake.trade("linear", "BTCUSDT", price=100 + i, size=1,
                               ts=now - 600_000 + i * 120_000)
                    await trio.sleep(0.01)
    assert status == [0], err.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("linear klines  BTCUSDT") for line in lines)
