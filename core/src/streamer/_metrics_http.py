"""The operations listener of ``[streamer] metrics = "host:port"``: ``/metrics`` (Prometheus
text format, rendered by ``prometheus_client.generate_latest``), ``/healthz`` and ``/readyz``.

A deliberately small HTTP/1.0-style server on trio: one ``GET`` (or ``HEAD``) per connection,
answered and closed. Everything a client sends is bounded (docs/operations.md):
``MAX_CONNECTIONS`` at once (more are answered 503 without reading their request, up to
``MAX_CONNECTIONS`` more at once; beyond that they are closed unanswered),
``MAX_REQUEST_BYTES`` of request head (431 beyond), ``REQUEST_TIMEOUT`` seconds to send it
(408 after) and ``WRITE_TIMEOUT`` seconds to take the answer. A request body is never read.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer._api import FatalError
from streamer._exposition import LoopLag, PipelineCollector, make_registry, not_ready

if TYPE_CHECKING:
    from streamer._runtime import Pipeline

log = logging.getLogger("streamer.metrics")

MAX_CONNECTIONS = 16
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
#: After answering, unread client bytes are discarded for this long / up to this many.
LINGER_TIMEOUT = 1.0
LINGER_BYTES = 65536
#: /healthz answers 503 while an event-loop lag sample of the last LAG_WINDOW (10) seconds
#: exceeds this (seconds): the loop was blocked, e.g. by a plugin doing blocking I/O.
HEALTH_MAX_LAG = 2.0

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` / ``":9464"`` -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"expected host:port such as '127.0.0.1:9464', got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _response(status: int, body: bytes, content_type: str, head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("ascii")
    return head if head_only else head + body


def _json(status: int, doc: object, head_only: bool = False) -> bytes:
    return _response(status, json.dumps(doc, sort_keys=True).encode() + b"\n",
                     "application/json", head_only)


class OpsServer:
    """Serves one pipeline's metrics, health and readiness."""

    def __init__(self, pipeline: Pipeline, *, max_data_age: float | None = 60.0) -> None:
        self.pipeline = pipeline
        self.max_data_age = max_data_age
        self.lag = LoopLag()
        #: Set by the caller once ``pipeline.run`` reported started (every node is up).
        self.pipeline_started = False
        self.registry = make_registry(PipelineCollector(pipeline, self.lag, self.not_ready))
        self.connections = 0
        #: The bound TCP port (known once ``run`` started).
        self.port = 0
        #: Connections refused because MAX_CONNECTIONS were open.
        self.refused = 0
        #: Refused connections still being answered 503 (at most MAX_CONNECTIONS).
        self._refusing = 0

    def not_ready(self) -> dict[str, list[str]]:
        return not_ready(self.pipeline, self.max_data_age, self.pipeline_started)

    # -- answers -------------------------------------------------------------------------

    def answer(self, method: str, path: str) -> bytes:
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": "only GET and HEAD"})
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return _response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST, head_only)
        if path == "/healthz":
            lag = self.lag.recent_max()
            ok = lag <= HEALTH_MAX_LAG
            return _json(200 if ok else 503, {"status": "alive" if ok else "event loop lagging",
                                              "event_loop_lag_seconds": round(lag, 4)}, head_only)
        if path == "/readyz":
            problems = self.not_ready()
            if problems:
                return _json(503, {"ready": False, "not_ready": problems}, head_only)
            return _json(200, {"ready": True}, head_only)
        return _json(404, {"error": "not found; try /metrics, /healthz or /readyz"}, head_only)

    # -- serving -------------------------------------------------------------------------

    async def listen(self, host: str, port: int) -> list[trio.SocketListener]:
        """Bind host:port; :class:`FatalError` if it cannot (a restart would not help)."""
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            why = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
            raise FatalError(f"metrics: cannot listen on {host}:{port}: {why}") from exc
        self.port = listeners[0].socket.getsockname()[1]
        return listeners

    async def serve(self, listeners: list[trio.SocketListener], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample the loop lag and answer requests until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.lag.run)
            task_status.started()
            await trio.serve_listeners(self._handle, listeners, handler_nursery=nursery)

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self.connections >= MAX_CONNECTIONS:
                self.refused += 1
                if self._refusing < MAX_CONNECTIONS:  # else close at once, unanswered
                    self._refusing += 1
                    try:
                        await _reply(stream, _json(503, {"error": "too many connections"}))
                    finally:
                        self._refusing -= 1
                return
            self.connections += 1
            try:
                await self._serve_one(stream)
            finally:
                self.connections -= 1

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        reply: bytes | None = None
        with trio.move_on_after(REQUEST_TIMEOUT):
            reply = await self._read_request(stream)
        if reply is None:
            reply = _json(408, {"error": f"no complete request in {REQUEST_TIMEOUT:g} s"})
        await _reply(stream, reply)

    async def _read_request(self, stream: trio.SocketStream) -> bytes:
        data = bytearray()
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            if len(data) > MAX_REQUEST_BYTES:
                return _json(431, {"error": f"request head over {MAX_REQUEST_BYTES} bytes"})
            try:
                chunk = await stream.receive_some(MAX_REQUEST_BYTES + 1 - len(data) or 1)
            except trio.BrokenResourceError:
                chunk = b""
            if not chunk:
                return _json(400, {"error": "connection closed before a complete request"})
            data += chunk
        if data.find(b"\n") > MAX_REQUEST_BYTES:
            return _json(431, {"error": f"request head over {MAX_REQUEST_BYTES} bytes"})
        parts = bytes(data.split(b"\n", 1)[0]).decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _json(400, {"error": "expected 'METHOD /path HTTP/1.x'"})
        return self.answer(parts[0], parts[1])


async def _reply(stream: trio.SocketStream, data: bytes) -> None:
    """Send ``data``, then half-close and discard what the client still sends (bounded):
    closing with unread bytes would reset the connection and lose the answer."""
    try:
        with trio.move_on_after(WRITE_TIMEOUT):
            await stream.send_all(data)
            await stream.send_eof()
        with trio.move_on_after(LINGER_TIMEOUT):
            drained = 0
            while drained < LINGER_BYTES and (chunk := await stream.receive_some(16384)):
                drained += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away; nothing to answer


async def serve_ops(
    pipeline: Pipeline, address: str, *, max_data_age: float | None = 60.0,
    on_bound: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[OpsServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` of ``pipeline`` on ``address``."""
    host, port = parse_address(address)
    server = OpsServer(pipeline, max_data_age=max_data_age)
    listeners = await server.listen(host, port)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.port}"
        log.info("metrics on %s/metrics, health on %s/healthz and %s/readyz", url, url, url)
        if on_bound is not None:
            on_bound(url)
        task_status.started(server)
