"""Fault 6: a websocket sink client that never reads is dropped, while 20 other clients keep
their full rate, under a real pipeline: fake Bybit (random market) -> bybit.linear ->
websocket sink (port 0).

Every fast client must receive every trade the fake made (exactly RATE * DURATION messages),
in order, each once; the stalled client is disconnected as too slow while the market is
still running; the sink's inbox never overflows (the producer never waited on a client).
"""

from __future__ import annotations

import msgspec
import trio
from pipelines import bybit_source
from trio_websocket import WebSocketConnection, open_websocket_url
from websocket.helpers import stalled_client

from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
FAST_CLIENTS = 20
RATE = 1_000  # publicTrade messages/s
TRADES_PER_MESSAGE = 10
DURATION = 4.0  # seconds of market

#: After the bybit source.
SINK = """
[[sinks]]
name = "ws"
type = "websocket"
inputs = ["bybit"]
port = 0
# A client whose one send blocks this long is dropped: the stalled client's socket buffers
# fill within ~2 s at this rate; a reading client's sends take milliseconds.
send_timeout = 2.5
# Had the sink ever waited on a client, its inbox would overflow and drop (and count) batches.
queue_size = 1000
overflow = "drop_oldest"
"""


async def read_trades(ws: WebSocketConnection, ids: list[str]) -> None:
    """Keep every trade id the client receives."""
    while True:
        envelope = msgspec.json.decode(await ws.get_message())
        if envelope.get("data_type") == "trades":
            ids.extend(item["i"] for item in envelope["data"])


async def test_stalled_client_dropped_twenty_others_get_everything(fake_bybit, plugin_manager):
    fake = fake_bybit
    toml = bybit_source(fake, SYMBOLS) + SINK
    expected = int(RATE * DURATION) * TRADES_PER_MESSAGE
    with trio.fail_after(120):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            sink = pipeline.node("ws")
            await fake.wait_subscribed("linear", [f"publicTrade.{s}" for s in SYMBOLS])
            url = f"ws://127.0.0.1:{sink.port}/"
            got: list[list[str]] = [[] for _ in range(FAST_CLIENTS)]
            async with trio.open_nursery() as clients:
                fast = [await clients.start(_client, url) for _ in range(FAST_CLIENTS)]
                stalled = await stalled_client(sink)
                await sink.wait_for_clients(FAST_CLIENTS + 1)
                for i, ws in enumerate(fast):
                    clients.start_soon(read_trades, ws, got[i])
                made = await fake.run_market("linear", SYMBOLS, rate=RATE,
                                             trades_per_message=TRADES_PER_MESSAGE,
                                             count=int(RATE * DURATION), tickers=False)
                kicks_during_market = sink.metrics["slow_client_disconnects"]
                total = made * TRADES_PER_MESSAGE
                with trio.move_on_after(30):
                    while any(len(ids) < total for ids in got):
                        await trio.sleep(0.05)
                stalled.close()
                clients.cancel_scope.cancel()
            metrics = pipeline.metrics()
    per_symbol = {s: [t["i"] for t in fake.history("linear", s)] for s in SYMBOLS}
    symbol_of = {tid: s for s, ids in per_symbol.items() for tid in ids}
    assert total == len(symbol_of) == expected
    for i, ids in enumerate(got):
        assert len(ids) == total, f"client {i} got {len(ids)} of {total} trades"
        mine: dict[str, list[str]] = {s: [] for s in SYMBOLS}
        for tid in ids:
            mine[symbol_of[tid]].append(tid)
        assert mine == per_symbol, f"client {i}: trades lost, doubled or reordered"
    assert kicks_during_market == 1, "the stalled client was not dropped during the run"
    assert metrics["ws"].get("inbox_dropped_batches", 0) == 0, metrics["ws"]


async def _client(url: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    # The sink coalesces a client's queued envelopes into one message: allow big ones.
    async with open_websocket_url(url, message_queue_size=100_000,
                                  max_message_size=64 * 1024 * 1024) as ws:
        task_status.started(ws)
        await trio.sleep_forever()
