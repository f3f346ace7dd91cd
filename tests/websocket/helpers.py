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
from streamer._metrics import Metrics
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.sink import WebSocketSink

StartSink = Callable[..., Awaitable[tuple[WebSocketSink, Inbox]]]


def basic(user: str, key: str) -> list[tuple[bytes, bytes]]:
    """An ``Authorization: Basic`` header for ``user`` and ``key``."""
    return [(b"Authorization", b"Basic " + base64.b64encode(f"{user}:{key}".encode()))]


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


async def raw_handshake(
    sink: WebSocketSink,
    path: str = "/",
    *,
    source: str = "127.0.0.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    port: int | None = None,
) -> tuple[trio.socket.SocketType, bytes]:
    """A raw WebSocket client from ``source`` (any 127.x address): (socket, HTTP response).
    It connects to the sink, or to ``port`` (a proxy in front of it).

    Its receive buffer is pinned small, so the server's sends to it block soon once it stops
    reading.
    """
    port = sink.port if port is None else port
    assert port is not None
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{name.decode()}: {value.decode()}\r\n" for name, value in headers or [])
    await sock.send(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await sock.recv(1)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        response += chunk
    return sock, response


async def stalled_client(
    sink: WebSocketSink, path: str = "/", *, source: str = "127.0.0.1", port: int | None = None
) -> trio.socket.SocketType:
    """A raw WebSocket client that completes the handshake and then never reads."""
    sock, response = await raw_handshake(sink, path, source=source, port=port)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def send_all(sock: trio.socket.SocketType, data: bytes) -> bool:
    """Send everything; False once the server has closed the connection."""
    view = memoryview(data)
    while view:
        try:
            sent = await sock.send(view)
        except (BrokenPipeError, ConnectionResetError):
            return False
        view = view[sent:]
    return True


def client_frame(text: str) -> bytes:
    """One masked text frame, as a client must send it."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class FrameReader:
    """Reads server frames from a raw client socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buffer = b""

    async def _take(self, n: int) -> bytes | None:
        while len(self.buffer) < n:
            try:
                chunk = await self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def next(self) -> tuple[int, bytes] | None:
        """The next frame (opcode, payload), or None when the server closed the socket."""
        head = await self._take(2)
        if head is None:
            return None
        length = head[1] & 0x7F
        if length >= 126:
            ext = await self._take(2 if length == 126 else 8)
            if ext is None:
                return None
            length = int.from_bytes(ext, "big")
        payload = await self._take(length) if length else b""
        if payload is None:
            return None
        return head[0] & 0x0F, payload


async def read_close_code(sock: trio.socket.SocketType) -> int | None:
    """Read frames until the server's close frame; its code (None: cut without one)."""
    reader = FrameReader(sock)
    while True:
        frame = await reader.next()
        if frame is None:
            return None
        opcode, payload = frame
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


async def answer(sock: trio.socket.SocketType) -> tuple[str | None, int | None]:
    """After a first message: the server's text reply (if any) and its close code (None:
    cut without one); (reply, None) at once when authenticated (the connection stays open)."""
    reader = FrameReader(sock)
    text = None
    while True:
        frame = await reader.next()
        if frame is None:
            return text, None
        opcode, payload = frame
        if opcode == 0x1:
            text = payload.decode()
            if text == '{"status":"authenticated"}':
                return text, None
        elif opcode == 0x8:
            return text, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def close_code(exc: ConnectionClosed) -> int:
    assert exc.reason is not None
    return exc.reason.code
