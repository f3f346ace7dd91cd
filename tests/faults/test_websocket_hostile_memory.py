"""The websocket sink's memory under the three hostile clients, each while a real client is
served: a reply flood (large subscribe requests, never reading), a subscription flood
(100 subscribes of 4,000 symbols each) and 100 sockets that never authenticate.

Memory is measured deterministically with tracemalloc over the whole process (sink and test
clients alike), per hostile client, against a ceiling; the RSS figures of a server in its own
process come from bench/bench_websocket_hostile.py.
"""

from __future__ import annotations

import base64
import tracemalloc
from collections.abc import AsyncIterator

import msgspec
import pytest
import trio
from trio_websocket import WebSocketConnection, connect_websocket_url
from websocket.helpers import (
    client_frame,
    kline,
    make_sink,
    price,
    raw_handshake,
    read_close_code,
    send_all,
    ticker,
)

from streamer import Inbox
from streamer_websocket.sink import WebSocketSink

KEY_ENV = "STREAMER_TEST_WS_MEMORY_KEY"
KEY = "m3mory-key"
SYMBOLS = [f"S{i:04d}USDT" for i in range(4600)]
#: Growth of traced memory allowed while one hostile client does its worst. Before the bounds
#: the reply flood alone queued > 25 MB of acknowledgements and the subscription flood
#: held 100 x 4,000 symbols per pair.
CEILING = 12 * 2**20
AUTH = [(b"Authorization", b"Basic " + base64.b64encode(f"alice:{KEY}".encode()))]


@pytest.fixture
async def sink(nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator:
    monkeypatch.setenv(KEY_ENV, KEY)
    sink = make_sink(auth_user="alice", auth_key_env=KEY_ENV, send_timeout=60,
                     auth_timeout=60, max_client_message=65536)
    inbox = Inbox("ws", maxsize=100, overflow="block")
    await nursery.start(sink.run, inbox)
    # A snapshot as large as the whole market: ticker, price and a kline per symbol.
    for start in range(0, len(SYMBOLS), 500):
        chunk = SYMBOLS[start:start + 500]
        await inbox.put([ticker(s) for s in chunk] + [price(s) for s in chunk]
                        + [kline(s) for s in chunk])
    while len(sink.snapshot) < 3 * len(SYMBOLS):
        await trio.sleep(0.001)
    yield sink, inbox


async def real_client(nursery: trio.Nursery, sink: WebSocketSink) -> WebSocketConnection:
    ws = await connect_websocket_url(nursery, sink.url, extra_headers=AUTH,
                                     message_queue_size=10_000)
    await ws.send_message('{"op":"subscribe","args":[{"channel":"linear","data_type":"trades"}]}')
    while "success" not in (await ws.get_message()):
        pass
    return ws


async def served(ws: WebSocketConnection, inbox: Inbox, marker: int) -> None:
    """The real client gets a live trade published now (and a pong)."""
    from websocket.helpers import trade
    await inbox.put([trade("S0001USDT", marker)])
    while True:
        env = msgspec.json.decode(await ws.get_message())
        if env.get("data_type") == "trades" and env["data"][-1]["i"] == f"t{marker}":
            break
    await ws.send_message('{"op":"ping"}')
    while msgspec.json.decode(await ws.get_message()) != {"op": "pong"}:
        pass


class Traced:
    """Peak growth of traced memory over a block."""

    def __enter__(self) -> Traced:
        tracemalloc.reset_peak()
        self.base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = tracemalloc.get_traced_memory()[1] - self.base


@pytest.fixture
def traced() -> AsyncIterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


async def test_reply_flood_stays_under_the_ceiling(sink, nursery, traced) -> None:
    sink, inbox = sink
    with trio.fail_after(60):
        ws = await real_client(nursery, sink)
        symbols = SYMBOLS[:1900]
        request = client_frame(msgspec.json.encode({"op": "subscribe", "args": [
            {"channel": "linear", "data_type": "ticker", "symbols": symbols},
            {"channel": "linear", "data_type": "price", "symbols": symbols},
        ]}).decode())
        assert len(request) < 65536
        with Traced() as traced_flood:
            sock, response = await raw_handshake(sink, headers=AUTH)
            assert response.startswith(b"HTTP/1.1 101")
            await sink.wait_for_clients(2)
            for _ in range(400):  # 25 MB of acks were they kept
                if not await send_all(sock, request) or len(sink.clients) < 2:
                    break
            await sink.wait_for_clients(1)
            await served(ws, inbox, 1)
        assert sink.metrics["reply_overflow_disconnects"] == 1
        assert traced_flood.growth < CEILING, traced_flood.growth
        sock.close()


async def test_subscription_flood_stays_under_the_ceiling(sink, nursery, traced) -> None:
    sink, inbox = sink
    with trio.fail_after(60):
        ws = await real_client(nursery, sink)
        flood = await connect_websocket_url(nursery, sink.url, extra_headers=AUTH,
                                            message_queue_size=10)
        await sink.wait_for_clients(2)
        (client,) = [c for c in sink.clients if c.subscription is None]
        with Traced() as traced_flood:
            for i in range(100):
                # Names never seen, so that only the cap bounds the set.
                part = [f"F{i:03d}X{j:04d}" for j in range(4000)]
                await flood.send_message(msgspec.json.encode({"op": "subscribe", "args": [
                    {"channel": "spot", "data_type": "klines", "symbols": part[:2000]},
                    {"channel": "spot", "data_type": "price", "symbols": part[2000:]},
                ]}).decode())
                # Read as a fast client would: acks, errors and snapshots.
                while True:
                    reply = msgspec.json.decode(await flood.get_message())
                    if "op" in reply:
                        break
            await served(ws, inbox, 2)
        assert client.subscription is not None
        assert client.subscription.size <= sink.config.max_subscriptions_per_client
        assert sink.metrics["bad_client_messages"] >= 90  # refused past the cap
        assert traced_flood.growth < CEILING, traced_flood.growth


async def test_unauthenticated_sockets_stay_under_the_ceiling(sink, nursery, traced) -> None:
    sink, inbox = sink
    with trio.fail_after(60):
        ws = await real_client(nursery, sink)
        with Traced() as traced_idle:
            idle = []
            closed = 0
            for i in range(100):
                sock, response = await raw_handshake(sink, source=f"127.0.1.{1 + i % 25}")
                assert response.startswith(b"HTTP/1.1 101")
                idle.append(sock)
            while sink.unauthenticated + sink.metrics["rejected_unauthenticated"] \
                    < 100:
                await trio.sleep(0.001)
            for sock in idle:
                with trio.move_on_after(0.05):
                    if await read_close_code(sock) == 1013:
                        closed += 1
            # Another user is admitted while they wait.
            other = await real_client(nursery, sink)
            await served(other, inbox, 3)
            await served(ws, inbox, 4)
        assert sink.unauthenticated == sink.config.max_unauthenticated
        assert closed == 100 - sink.config.max_unauthenticated
        assert traced_idle.growth < CEILING, traced_idle.growth
        for sock in idle:
            sock.close()
