"""The operations listener of ``[streamer] metrics = "host:port"``: ``/metrics`` (Prometheus
text format, rendered by ``prometheus_client.generate_latest``), ``/healthz`` and ``/readyz``.

A deliberately small HTTP/1.0-style server on trio: one ``GET`` (or ``HEAD``) per connection,
answered and closed. Everything a client sends is bounded (docs/operations.md, the figures are
:class:`OpsLimits`): connections per source address and in all (``streamer._ops_admission``:
past the total the oldest slow connection makes room, so a probe is always let in),
``MAX_REQUEST_BYTES`` of request head (431 beyond), ``head_timeout`` seconds from connecting
to send it (408 after) and ``request_timeout`` seconds from connecting to closing, the answer
and the linger after it included. A request body is never read.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer._address import parse_address
from streamer._api import FatalError
from streamer._exposition import LoopLag, PipelineCollector, make_registry, not_ready
from streamer._metrics import Sample
from streamer._ops_admission import Admission, OpsConnection
from streamer._settings import StreamerSettings

if TYPE_CHECKING:
    from streamer._node import PipelineNodes

log = logging.getLogger("streamer.metrics")

MAX_REQUEST_BYTES = 8192
#: After answering, unread client bytes are discarded for this long / up to this many.
LINGER_TIMEOUT = 1.0
LINGER_BYTES = 65536
#: /healthz answers 503 while an event-loop lag sample of the last LAG_WINDOW (10) seconds
#: exceeds this (seconds): the loop was blocked, e.g. by a plugin doing blocking I/O.
HEALTH_MAX_LAG = 2.0

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


@attrs.frozen
class OpsLimits:
    """The listener's ceilings; ``[streamer] metrics_*`` settings (docs/config.md)."""

    #: Connections open at once; one more takes the place of the oldest slow one.
    max_connections: int = 64
    #: Connections open at once from one source address; one more is closed unanswered.
    max_connections_per_address: int = 8
    #: Seconds from connecting to the end of the request head (header read deadline).
    head_timeout: float = 5.0
    #: Seconds from connecting to closing: reading, answering and lingering (whole request).
    request_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: StreamerSettings) -> OpsLimits:
        return cls(settings.metrics_max_connections, settings.metrics_max_connections_per_address,
                   settings.metrics_head_timeout, settings.metrics_request_timeout)


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

    def __init__(self, pipeline: PipelineNodes, *, max_data_age: float | None = 60.0,
                 limits: OpsLimits = OpsLimits()) -> None:
        self.pipeline = pipeline
        self.max_data_age = max_data_age
        self.limits = limits
        self.lag = LoopLag()
        #: Set by the caller once ``pipeline.run`` reported started (every node is up).
        self.pipeline_started = False
        self.admission = Admission(limits.max_connections, limits.max_connections_per_address)
        #: Connections answered 408: no complete request head within ``head_timeout``.
        self.head_timeouts = 0
        #: Connections closed at ``request_timeout`` while answering or lingering.
        self.request_timeouts = 0
        self.registry = make_registry(PipelineCollector(pipeline, self.lag, self.not_ready,
                                                        self.samples))
        #: The bound TCP port (known once ``run`` started).
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self.admission)

    def not_ready(self) -> dict[str, list[str]]:
        return not_ready(self.pipeline, self.max_data_age, self.pipeline_started)

    def samples(self) -> list[Sample]:
        """The listener's own metrics (``streamer_ops_*``)."""
        admission = self.admission
        return [
            Sample("connections", len(admission), help="Open connections of the ops listener"),
            Sample("connections_refused", admission.refused, kind="counter",
                   help="Connections closed unanswered: their address had "
                        "metrics_max_connections_per_address open"),
            Sample("connections_evicted", admission.evicted, kind="counter",
                   help="Connections closed to make room (metrics_max_connections open)"),
            Sample("request_timeouts", self.head_timeouts, {"deadline": "head"}, "counter",
                   "Connections closed at a deadline: head = metrics_head_timeout (408), "
                   "request = metrics_request_timeout"),
            Sample("request_timeouts", self.request_timeouts, {"deadline": "request"},
                   "counter"),
        ]

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
            try:
                address = str(stream.socket.getpeername()[0])
            except OSError:
                return  # gone before it was seen
            conn = self.admission.enter(address,
                                        trio.current_time() + self.limits.request_timeout)
            if conn is None:
                log.warning("metrics: %s already has %d connections open "
                            "(metrics_max_connections_per_address); closing its new one",
                            address, self.limits.max_connections_per_address)
                return
            try:
                with conn.scope:
                    await self._serve_one(stream, conn)
                if conn.scope.cancelled_caught and not conn.evicted:
                    self.request_timeouts += 1
            finally:
                self.admission.leave(conn)

    async def _serve_one(self, stream: trio.SocketStream, conn: OpsConnection) -> None:
        reply: bytes | None = None
        head_timeout = self.limits.head_timeout
        with trio.move_on_at(conn.opened + head_timeout):
            reply = await self._read_request(stream)
        conn.reading = False
        if reply is None:
            self.head_timeouts += 1
            reply = _json(408, {"error": f"no complete request in {head_timeout:g} s"})
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
    closing with unread bytes would reset the connection and lose the answer. The caller's
    ``request_timeout`` bounds the sending."""
    try:
        await stream.send_all(data)
        await stream.send_eof()
        with trio.move_on_after(LINGER_TIMEOUT):
            drained = 0
            while drained < LINGER_BYTES and (chunk := await stream.receive_some(16384)):
                drained += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away; nothing to answer


async def serve_ops(
    pipeline: PipelineNodes, address: str, *, max_data_age: float | None = 60.0,
    limits: OpsLimits = OpsLimits(), on_bound: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[OpsServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` of ``pipeline`` on ``address``."""
    host, port = parse_address(address)
    server = OpsServer(pipeline, max_data_age=max_data_age, limits=limits)
    listeners = await server.listen(host, port)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.port}"
        log.info("metrics on %s/metrics, health on %s/healthz and %s/readyz", url, url, url)
        if on_bound is not None:
            on_bound(url)
        task_status.started(server)
