"""Helpers for the websocket sink tests: a sink on 127.0.0.1 port 0, clients, events."""

from __future__ import annotations

import base64
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    connect_websocket_url,
    open_websocket_url,
)

from streamer import Context, Inbox, Kline, Price, Ticker, Trade
from streamer.metrics import Metrics
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.sink import WebSocketSink

StartSink = Callable[..., Awaitable[tuple[WebSocketSink, Inbox]]]


def make_sink(**options: Any) -> WebSocketSink:
    options.setdefault("port", 0)
    config = WebSocketConfig(**options)
    context = Context(
        name="ws", type="websocket", logger=logging.getLogger("test.websocket"), metrics=Metrics()
    )
    return WebSocketSink(config, context)


async def connect(
    nursery: trio.Nursery,
    sink: WebSocketSink,
    *,
    path: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    message_queue_size: int = 1000,
) -> WebSocketConnection:
    url = f"ws://127.0.0.1:{sink.port}{path if path is not None else sink.config.path}"
    return await connect_websocket_url(
        nursery, url, extra_headers=headers, message_queue_size=message_queue_size
    )


async def recv(ws: WebSocketConnection) -> Any:
    return msgspec.json.decode(await ws.get_message())


async def send(ws: WebSocketConnection, message: Any) -> None:
    await ws.send_message(msgspec.json.encode(message).decode())


async def recv_until_data(ws: WebSocketConnection) -> dict[str, Any]:
    """Skip control replies; return the next data envelope."""
    while True:
        message = await recv(ws)
        if "data_type" in message:
            return message


async def recv_events(ws: WebSocketConnection, count: int) -> list[tuple[str, str, dict]]:
    """Receive data envelopes until ``count`` items arrived: [(channel, data_type, item)]."""
    items: list[tuple[str, str, dict]] = []
    while len(items) < count:
        env = await recv_until_data(ws)
        items.extend((env["channel"], env["data_type"], item) for item in env["data"])
    return items


def trade(symbol: str = "BTCUSDT", i: int = 0, channel: str = "linear") -> Trade:
    return Trade(channel=channel, symbol=symbol, ts=1_700_000_000_000 + i, side="Buy",
                 price=str(100 + i), size="0.5", trade_id=f"t{i}")


def kline(symbol: str = "BTCUSDT", close: float = 100.0, *, channel: str = "linear",
          closed: bool = False, ts: int = 1_700_000_000_000, interval: int = 60_000) -> Kline:
    return Kline(channel=channel, symbol=symbol, interval=interval, timestamp=ts, open=100.0,
                 high=max(100.0, close), low=min(100.0, close), close=close, volume=1.0,
                 trade_count=1, closed=closed)


def ticker(symbol: str = "BTCUSDT", last: float = 100.0, channel: str = "linear") -> Ticker:
    return Ticker(channel=channel, symbol=symbol, ts=1_700_000_000_000,
                  fields={"symbol": symbol, "lastPrice": last})


def price(symbol: str = "BTCUSDT", value: float = 100.0, channel: str = "linear") -> Price:
    return Price(channel=channel, symbol=symbol, price=value, ts=1_700_000_000_000)


async def expect_rejected(
    sink: WebSocketSink, headers: list[tuple[bytes, bytes]] | None = None
) -> ConnectionRejected:
    """Connect and return the handshake rejection (fails if the handshake succeeds)."""
    url = f"ws://127.0.0.1:{sink.port}{sink.config.path}"
    try:
        async with open_websocket_url(url, extra_headers=headers):
            pass
    except ConnectionRejected as exc:
        return exc
    raise AssertionError("the handshake was accepted")


async def stalled_client(sink: WebSocketSink, path: str = "/") -> trio.socket.SocketType:
    """A raw WebSocket client that completes the handshake and then never reads.

    Its receive buffer is pinned small, so the server's sends to it block soon.
    """
    port = sink.port
    assert port is not None
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await sock.send(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def close_code(exc: ConnectionClosed) -> int:
    assert exc.reason is not None
    return exc.reason.code
