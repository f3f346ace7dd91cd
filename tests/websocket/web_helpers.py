"""Shared by the web view tests: raw HTTP requests, and a streamer that can be restarted."""

from __future__ import annotations

import os
from typing import Any

import trio

from streamer.testing import running_pipeline

WEB_PIPE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT"]
streams = ["trades", "tickers"]
url = "{ws}"
rest_url = "{rest}"
recover_gaps = false

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m"]
waiter = false
first_candle = "partial"

[[sinks]]
name = "wss"
type = "websocket"
inputs = ["klines", "bybit"]
port = {port}
web = true
auth_user = "viewer"
auth_failure_delay = 0.05
"""

#: The web view over books: the Bybit source's order books of two symbols (depth 50) and
#: their tickers, straight to the sink (``{top}``: or through ``books.top`` when set to
#: BOOKS_TOP). The fixture's fake pushes a book only when a test says so, so the source is
#: told a book may stay silent for an hour.
BOOK_PIPE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["tickers", "orderbook"]
book_depth = 50
book_stale_s = 3600
url = "{ws}"
rest_url = "{rest}"
{top}
[[sinks]]
name = "wss"
type = "websocket"
inputs = ["{book_input}"]
port = {port}
web = true
auth_user = "viewer"
auth_failure_delay = 0.05
"""

#: ``books.top`` between the source and the sink: the top 10 levels, at most every 100 ms.
BOOKS_TOP = """
[[transforms]]
name = "top"
type = "books.top"
inputs = ["bybit"]
depth = 10
interval_ms = 100
"""


async def http_request(port: int, raw: bytes, limit: int = 1 << 20) -> bytes:
    """Send ``raw`` to 127.0.0.1:``port`` and read the answer until the server closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        out = bytearray()
        while len(out) < limit:
            data = await stream.receive_some(65536)
            if not data:
                break
            out += data
    return bytes(out)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, body


class Streamer:
    """A pipeline run in the test's nursery that can be stopped and started again."""

    def __init__(self, toml: str, plugin_manager: Any) -> None:
        self.toml = toml
        self.pm = plugin_manager
        self._stop: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self.pipeline: Any = None

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await nursery.start(self._run)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        self._stop, self._stopped = trio.Event(), trio.Event()
        try:
            async with running_pipeline(self.toml, self.pm, environ=dict(os.environ)) as pipeline:
                self.pipeline = pipeline
                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        assert self._stop is not None and self._stopped is not None
        self._stop.set()
        await self._stopped.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start(self._nursery)
