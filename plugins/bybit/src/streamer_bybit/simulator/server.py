"""FakeBybit: an in-process trio fake of Bybit's V5 public WebSocket and REST market API.

One TCP port serves both: the HTTP request head is read by hand; an ``Upgrade: websocket``
request on ``/v5/public/linear`` or ``/v5/public/spot`` becomes a WebSocket connection
(handshake and incoming frames by websockets' sans-I/O ``ServerProtocol``; outgoing data
frames are built here, encoded once and shared by every subscriber, and a connection's
queued frames are written with one ``send_all``); anything else is answered as REST.

Choices the fake makes where Bybit's behaviour is unknown or not worth imitating:

* Args of one connection must total under 21,000 characters (sum of topic lengths); a
  subscribe that would reach it is refused with ``error:args length exceeded`` and none
  of its topics subscribed.
* Spot refuses the whole batch too (like linear) when one topic is bad; the error is
  ``Invalid symbol :[<T>]``.  Already-subscribed topics give
  ``error:already subscribed,topic:<T>`` on both categories.  Unsubscribing a topic that is
  not subscribed is acknowledged with success.
* Only ``publicTrade``, ``tickers``, ``kline`` and ``orderbook.{depth}`` topics exist (the
  books and their faults: books.py); any other topic is refused as unknown.
* A kline candle closes (``confirm: true`` is pushed) on the first trade of the symbol at
  or after the boundary, not by a timer; the confirm message for the old candle comes
  first, then the update of the new one, one candle per message.  Minutes without trades
  have no candle (REST does not fill gaps).
* The message-level ``ts`` is ``streamer.clock.now_ms()`` when the message is built
  (``stamp=True``: wall-clock ``time.time_ns() // 1_000_000`` instead, which benches use as
  the send time).  Trade ``T`` is the ``ts`` passed to ``trade()`` (default now).  With
  ``stamp=True`` ``run_market``'s trade ids also end in ``@<wall-clock microseconds>`` of the
  moment the message was built, since ``T``'s whole milliseconds would overstate a latency
  by 0-1 ms.
* Each ``trade()`` call has one ``seq`` shared by its trades (Bybit's seq may repeat).
* Idle connections (no client frame for ``idle_timeout`` seconds of trio time, default 600)
  are dropped without a close frame.  Client JSON that is not an object or has an
  unknown op gets ``{"success":false,"ret_msg":"error:unsupported op",...}``.
* Prices entered by hand are rounded to the symbol's tick, sizes to its quantity step.
* REST recent-trade lags the WebSocket by ``rest_trade_lag`` seconds of trio time (default 0,
  in step): a trade is listed only that long after it was pushed (or made, while its topic is
  paused). A ``(low, high)`` pair draws the lag of each request from a seeded uniform
  distribution, so successive answers may even go back in time, as a load-balanced endpoint
  can. Trades made before a lag was first set count as pushed long ago.
* ``rest_delay`` seconds (trio time) pass before any REST answer is written, plus
  ``rest_path_delay[path]`` for that path (one slow endpoint); paths in ``rest_failing``
  answer HTTP 503. ``rest_bodies[path]`` is a list of raw bodies: each request of that path
  takes the first one and gets it as it is with HTTP 200 (a malformed answer), until the list
  is empty and the normal answers resume.
"""

from __future__ import annotations

import base64
import collections
import functools
import math
import random
import socket
import ssl
import struct
import sys
import time
from collections.abc import Iterable
from typing import cast
from urllib.parse import parse_qsl, urlsplit

import msgspec
import trio
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from streamer.clock import now_ms

from .books import BookFeed, book_depth_ok
from .market import INTERVALS, Candle, Instrument, fmt, period_end, period_start, to_int
from .pacing import EvenTicker
from .tls import TLSServerStream

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

WS_PATHS = {"/v5/public/linear": "linear", "/v5/public/spot": "spot"}
MAX_ARGS_CHARS = 21_000
SPOT_MAX_ARGS = 10
TRADES_PER_MESSAGE_MAX = 1024
PACINGS = ("batched", "even")
_HIGH_WATER = 1 << 20  # run_market waits while a connection has more than this queued
_dumps = msgspec.json.encode
_loads = msgspec.json.decode
_pack_h = struct.Struct("!BBH").pack
_pack_q = struct.Struct("!BBQ").pack


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, final WebSocket frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return _pack_h(0x80 | opcode, 126, n) + payload
    return _pack_q(0x80 | opcode, 127, n) + payload


class _Closed(Exception):
    pass


class Connection:
    """A live WebSocket connection of the fake (see ``FakeBybit.connections``)."""

    def __init__(self, fake: FakeBybit, category: str, stream, tls, conn_id: str, protocol):
        self.fake = fake
        self.category = category
        self.topics: set[str] = set()
        self.conn_id = conn_id
        self.pings_received = 0
        self.messages_received = 0
        #: Writes to the socket (``send_all`` calls, or TLS record batches).
        self.writes = 0
        self.closed = False
        self._stream = stream  # the raw trio stream (TCP)
        self._tls: TLSServerStream | None = tls
        self._io = tls or stream
        self._protocol: ServerProtocol = protocol
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._sending = False
        self._wake = trio.Event()
        self._drained = trio.lowlevel.ParkingLot()
        self._scope: trio.CancelScope | None = None
        self._idle_scope: trio.CancelScope | None = None
        self._closing = False  # clean close started: no more data frames
        self._eof_after_flush = False

    def __repr__(self) -> str:
        return f"<Connection {self.category} {self.conn_id} topics={sorted(self.topics)}>"

    # -- queueing (sync, called from anywhere in the trio thread) ------------------
    def _enqueue(self, frame: bytes) -> None:
        if self.closed or self._closing:
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        self._wake.set()

    def _pump_protocol(self) -> None:
        for chunk in self._protocol.data_to_send():
            if chunk:
                self._out.append(chunk)
                self._out_bytes += len(chunk)
            else:
                self._eof_after_flush = True
        self._wake.set()  # (the writer also sends any TLS bytes the SSL object produced)

    @property
    def busy(self) -> bool:
        return bool(self._out) or self._sending

    async def wait_drained(self) -> None:
        while self.busy and not self.closed:
            await self._drained.park()

    async def _wait_space(self) -> None:
        while self._out_bytes > _HIGH_WATER and not self.closed:
            await self._drained.park()

    # -- tasks ---------------------------------------------------------------------
    async def _writer(self) -> None:
        one_record = self.fake.one_record_per_message
        one_write = self.fake.pacing == "even"
        tls = self._tls
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._out or (tls is not None and tls.has_pending()):
                frames, self._out = self._out, []
                self._out_bytes = 0
                self._sending = True
                self._drained.unpark_all()  # space again for run_market
                self.writes += 1 if tls is None and not one_write else len(frames)
                if tls is None and one_write:
                    for frame in frames:  # even pacing: every message its own write
                        await self._stream.send_all(frame)
                elif tls is None:
                    await self._stream.send_all(b"".join(frames))
                elif one_record:
                    await tls.send_records(frames)
                else:
                    await tls.send_records([b"".join(frames)] if frames else [])
                self._sending = False
            self._drained.unpark_all()
            if self._eof_after_flush or (self._closing and self._protocol.state is State.CLOSED):
                raise _Closed

    async def _reader(self) -> None:
        protocol = self._protocol
        while True:
            data = await self._io.receive_some(65536)
            if not data:
                protocol.receive_eof()
                self._pump_protocol()
                raise _Closed
            protocol.receive_data(data)
            events = cast("list[Frame]", protocol.events_received())
            for ev in events:
                op = ev.opcode
                if op is Opcode.TEXT or op is Opcode.BINARY:
                    self._activity()
                    self.messages_received += 1
                    self.fake._on_client_message(self, ev.data)
                elif op is Opcode.PING or op is Opcode.PONG:
                    self._activity()
            self._pump_protocol()
            if protocol.state is State.CLOSED:
                # client closed (or answered our close): flush what is queued then stop
                self._closing = True
                self.fake._forget(self)
                await self.wait_drained()
                raise _Closed

    def _activity(self) -> None:
        s = self._idle_scope
        if s is not None and self.fake.idle_timeout is not None:
            s.deadline = trio.current_time() + self.fake.idle_timeout

    async def _idle_watch(self) -> None:
        while True:
            with trio.CancelScope() as s:
                self._idle_scope = s
                t = self.fake.idle_timeout
                s.deadline = math.inf if t is None else trio.current_time() + t
                await trio.sleep_forever()
            self._idle_scope = None
            t = self.fake.idle_timeout
            if t is not None and s.cancelled_caught:
                raise _Closed  # idle: drop (the finally in _run_ws closes the socket)

    # -- faults --------------------------------------------------------------------
    def drop(self) -> None:
        """Abort the TCP connection (RST, no close frame)."""
        self.fake._forget(self)
        self.closed = True
        try:
            sock = self._stream.socket
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (AttributeError, OSError):
            pass
        if self._scope is not None:
            self._scope.cancel()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start a clean WebSocket close (close frame, wait for the client's, then FIN)."""
        if self.closed or self._closing:
            return
        self.fake._forget(self)
        try:
            self._protocol.send_close(code, reason)
        except Exception:
            self.drop()
            return
        self._pump_protocol()
        self._closing = True
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + 5.0)


_DISCONNECTS = (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                ssl.SSLError)


def _only(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """True if ``exc``, or every leaf of an exception group, is one of ``types``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, types) for inner in exc.exceptions)
    return isinstance(exc, types)


class FakeBybit:
    """Fake Bybit V5 public market data: WebSocket + REST on one port. See module doc."""

    def __init__(
        self,
        linear_symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"),
        spot_symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"),
        seed: int = 1,
        ssl_context=None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        one_record_per_message: bool = True,
        omit_optional_trade_fields: bool = False,
        history_limit: int | None = None,
        stamp: bool = False,
        rest_rate_limit: tuple[int, float] | None = None,
        non_trading_instruments: bool = True,
        rest_trade_lag: float | tuple[float, float] = 0.0,
        rest_delay: float = 0.0,
        pacing: str = "batched",
    ) -> None:
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}")
        #: How ``run_market`` spaces its messages at a fixed rate (see its doc).
        self.pacing = pacing
        self._rng = random.Random(seed)
        self._lag_rng = random.Random(seed * 7919 + 1)
        self._rest_trade_lag: float | tuple[float, float] = 0.0
        self._track_pushes = False
        self.rest_delay = rest_delay
        self.rest_in_flight = 0  # REST requests being answered now (and the most at once)
        self.rest_in_flight_max = 0
        self.ssl_context = ssl_context
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self.one_record_per_message = one_record_per_message
        self.omit_optional_trade_fields = omit_optional_trade_fields
        self.history_limit = history_limit
        self.stamp = stamp
        self.rest_rate_limit = rest_rate_limit  # e.g. (600, 5.0): HTTP 403 + retCode 10006
        self.markets: dict[str, dict[str, Instrument]] = {"linear": {}, "spot": {}}
        for cat, syms in (("linear", linear_symbols), ("spot", spot_symbols)):
            for s in syms:
                self.add_symbol(cat, s)
        if non_trading_instruments:
            self.add_symbol("linear", "NEWCOINUSDT", status="PreLaunch")
            self.add_symbol("linear", "OLDCOINUSDT", status="Closed")
            self.add_symbol("spot", "OLDCOINUSDT", status="Closed")
        self.connections: list[Connection] = []
        self.total_connections_opened = 0
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        #: REST paths answered only after this many more seconds (one slow endpoint).
        self.rest_path_delay: dict[str, float] = {}
        #: REST paths answered with HTTP 503 (a failing endpoint).
        self.rest_failing: set[str] = set()
        #: REST paths whose next requests are answered, one each, with these raw bodies.
        self.rest_bodies: dict[str, list[bytes]] = {}
        self.refused_topics: set[str] = set()
        self.ignore_pings = False
        self.reachable = True
        self._idle_timeout: float | None = 600.0
        self._paused: set[tuple[str, str]] = set()
        self._subs: dict[tuple[str, str], list[Connection]] = collections.defaultdict(list)
        self._sub_changed = trio.lowlevel.ParkingLot()
        self._kline_subs: collections.Counter[tuple[str, str]] = collections.Counter()
        #: The order books (simulator/books.py): ``push_book`` sends their messages.
        self.books = BookFeed(seed)
        self._serve_scope: trio.CancelScope | None = None
        self._rest_times: collections.deque[float] = collections.deque()
        self.rest_trade_lag = rest_trade_lag

    # ------------------------------------------------------------------ setup / urls
    def add_symbol(self, category: str, symbol: str, status: str = "Trading") -> Instrument:
        inst = Instrument(category, symbol, self._rng, status)
        if self.history_limit is not None:
            inst.history = collections.deque(maxlen=self.history_limit)
        if getattr(self, "_track_pushes", False):
            inst.pushes.append((-math.inf, 0))
        self.markets[category][symbol] = inst
        return inst

    @property
    def rest_trade_lag(self) -> float | tuple[float, float]:
        """Seconds REST recent-trade lags the WebSocket: a number, or ``(low, high)``."""
        return self._rest_trade_lag

    @rest_trade_lag.setter
    def rest_trade_lag(self, value: float | tuple[float, float]) -> None:
        lo, hi = value if isinstance(value, tuple) else (value, value)
        if not 0 <= lo <= hi:
            raise ValueError(f"rest_trade_lag must be >= 0 (low <= high), got {value!r}")
        self._rest_trade_lag = value
        if hi > 0 and not self._track_pushes:
            self._track_pushes = True
            for market in self.markets.values():
                for inst in market.values():
                    inst.pushes.append((-math.inf, inst.appended))

    def _lag(self) -> float:
        lag = self._rest_trade_lag
        if isinstance(lag, tuple):
            return lag[0] + self._lag_rng.random() * (lag[1] - lag[0])
        return lag

    def _note_push(self, inst: Instrument, n: int) -> None:
        """``n`` trades were appended to ``inst``'s history (and pushed) now."""
        inst.appended += n
        if self._track_pushes:
            pushes = inst.pushes
            now = trio.current_time()
            pushes.append((now, inst.appended))
            # Keep one push at or before the oldest cutoff a request can ask for.
            lag = self._rest_trade_lag
            oldest = now - (lag[1] if isinstance(lag, tuple) else lag)
            while len(pushes) > 2 and pushes[1][0] <= oldest:
                pushes.popleft()

    def _visible(self, inst: Instrument) -> int:
        """How many of ``inst``'s trades (counted from the first) REST lists now."""
        if not self._track_pushes:
            return inst.appended
        lag = self._lag()
        if lag <= 0:
            return inst.appended
        cutoff = trio.current_time() - lag
        visible = 0
        for at, count in inst.pushes:
            if at > cutoff:
                break
            visible = count
        return visible

    def _inst(self, category: str, symbol: str) -> Instrument:
        try:
            return self.markets[category][symbol]
        except KeyError:
            raise KeyError(f"unknown {category} symbol {symbol!r}") from None

    @property
    def _scheme(self) -> tuple[str, str]:
        return ("wss", "https") if self.ssl_context is not None else ("ws", "http")

    def ws_url(self, category: str) -> str:
        return f"{self._scheme[0]}://{self.host}:{self.port}/v5/public/{category}"

    @property
    def rest_url(self) -> str:
        return f"{self._scheme[1]}://{self.host}:{self.port}"

    @property
    def idle_timeout(self) -> float | None:
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, value: float | None) -> None:
        self._idle_timeout = value
        for c in self.connections:
            s = c._idle_scope
            if s is not None:
                s.deadline = math.inf if value is None else trio.current_time() + value

    def connection_count(self, category: str | None = None) -> int:
        return sum(1 for c in self.connections if category is None or c.category == category)

    # ------------------------------------------------------------------ serving
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on host:port (0 = free port); ``task_status.started(port)``; run forever."""
        with trio.CancelScope() as scope:
            self._serve_scope = scope
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, self._handle, self._want_port,
                                      host=self.host)
                )
                self.port = listeners[0].socket.getsockname()[1]
                task_status.started(self.port)

    def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.drop_connections()
        if self._serve_scope is not None:
            self._serve_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        tls = None
        try:
            if self.ssl_context is not None:
                tls = TLSServerStream(stream, self.ssl_context)
                with trio.fail_after(10):
                    await tls.handshake()
            io = tls or stream
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await io.receive_some(65536)
                    if not data:
                        return
                    buf += data
                    if len(buf) > 65536:
                        return
                end = buf.index(b"\r\n\r\n") + 4
                head, buf = buf[:end], buf[end:]
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, _version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if "websocket" in headers.get("upgrade", "").lower():
                    await self._run_ws(stream, tls, head, buf, target)
                    return
                length = int(headers.get("content-length", "0") or 0)
                while len(buf) < length:
                    data = await io.receive_some(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                keep = headers.get("connection", "").lower() != "close"
                self.rest_in_flight += 1
                self.rest_in_flight_max = max(self.rest_in_flight_max, self.rest_in_flight)
                try:
                    delay = self.rest_delay + self.rest_path_delay.get(urlsplit(target).path, 0.0)
                    if delay > 0:
                        await trio.sleep(delay)
                    status, body = self._rest(method, target)
                finally:
                    self.rest_in_flight -= 1
                reason = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                          503: "Service Unavailable"}.get(status, "Error")
                resp = (
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep and status == 200 else 'close'}\r\n\r\n"
                ).encode() + body
                await io.send_all(resp)
                if not keep or status != 200:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError,
                ssl.SSLError, _Closed):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    # ------------------------------------------------------------------ websocket
    async def _run_ws(self, stream, tls, head: bytes, rest: bytes, target: str) -> None:
        io = tls or stream
        if not self.reachable:
            return  # refused: the connection is closed without a response
        protocol = ServerProtocol(max_size=2**20)
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            return
        request = events[0]
        path = urlsplit(request.path).path
        category = WS_PATHS.get(path)
        if category is None:
            response = protocol.reject(404, "Not Found\n")
        else:
            response = protocol.accept(request)
        protocol.send_response(response)
        out = b"".join(protocol.data_to_send())
        if category is None or response.status_code != 101:
            await io.send_all(out)
            return
        # registered before the 101 goes out: a client that sees the 101 sees the connection
        conn = Connection(self, category, stream, tls, self._conn_id(), protocol)
        self.connections.append(conn)
        self.total_connections_opened += 1
        self._sub_changed.unpark_all()
        try:
            await io.send_all(out)
            with trio.CancelScope() as scope:
                conn._scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn._writer)
                    nursery.start_soon(conn._idle_watch)
                    if rest:
                        protocol.receive_data(rest)
                        for ev in cast("list[Frame]", protocol.events_received()):
                            if ev.opcode in (Opcode.TEXT, Opcode.BINARY):
                                conn.messages_received += 1
                                self._on_client_message(conn, ev.data)
                        conn._pump_protocol()
                    nursery.start_soon(conn._reader)
        except BaseException as exc:
            # A client going away is normal for the fake; anything else is a bug to surface.
            # (Not `except*`: the fake must import on Python 3.10 too.)
            if not _only(exc, _DISCONNECTS):
                raise
        finally:
            conn.closed = True
            self._forget(conn)
            conn._drained.unpark_all()

    def _conn_id(self) -> str:
        r = self._rng.getrandbits(80)
        alphabet = "abcdefghijklmnopqrstuv0123456789"
        s = "".join(alphabet[(r >> (5 * i)) & 31] for i in range(16))
        return f"{s}-{self._rng.randrange(1, 99)}"

    def _forget(self, conn: Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
        for t in conn.topics:
            self._drop_sub(conn, t)
        self._sub_changed.unpark_all()

    def _drop_sub(self, conn: Connection, topic: str) -> None:
        lst = self._subs.get((conn.category, topic))
        if lst and conn in lst:
            lst.remove(conn)
            if topic.startswith("kline."):
                self._kline_subs[(conn.category, topic.rsplit(".", 1)[1])] -= 1

    # ------------------------------------------------------------------ client messages
    def _ack(self, conn: Connection, op: str, success: bool, ret_msg: str, req_id) -> bytes:
        if conn.category == "linear":
            msg = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id,
                   "req_id": "" if req_id is None else req_id, "op": op}
        else:
            msg = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id}
            if req_id is not None:
                msg["req_id"] = req_id
            msg["op"] = op
        return ws_frame(_dumps(msg))

    def _on_client_message(self, conn: Connection, data) -> None:
        try:
            msg = _loads(data)
        except msgspec.DecodeError:
            msg = None
        if not isinstance(msg, dict):
            conn._enqueue(self._ack(conn, "", False, "error:unsupported op", None))
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        if op == "ping":
            conn.pings_received += 1
            if not self.ignore_pings:
                conn._enqueue(self._ack(conn, "ping", True, "pong", req_id))
            return
        if op in ("subscribe", "unsubscribe"):
            args = msg.get("args")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                conn._enqueue(self._ack(conn, op, False, "error:args must be a list of strings",
                                        req_id))
                return
            if op == "subscribe":
                self._subscribe(conn, args, req_id)
            else:
                self._unsubscribe(conn, args, req_id)
            return
        conn._enqueue(self._ack(conn, str(op or ""), False, "error:unsupported op", req_id))

    def _topic_ok(self, category: str, topic: str) -> bool:
        if topic in self.refused_topics:
            return False
        parts = topic.split(".")
        market = self.markets[category]
        if len(parts) == 2 and parts[0] in ("publicTrade", "tickers"):
            sym = parts[1]
        elif len(parts) == 3 and parts[0] == "orderbook" and book_depth_ok(category, parts[1]):
            sym = parts[2]
        elif len(parts) == 3 and parts[0] == "kline" and parts[1] in INTERVALS:
            sym = parts[2]
        else:
            return False
        inst = market.get(sym)
        return inst is not None and inst.status == "Trading"

    def _subscribe(self, conn: Connection, args: list[str], req_id) -> None:
        cat = conn.category
        ok_msg = "" if cat == "linear" else "subscribe"
        if cat == "spot" and len(args) > SPOT_MAX_ARGS:
            conn._enqueue(self._ack(conn, "subscribe", False, "args size >10", req_id))
            return
        for t in args:
            if not self._topic_ok(cat, t):
                err = (f"error:handler not found,topic:{t}" if cat == "linear"
                       else f"Invalid symbol :[{t}]")
                conn._enqueue(self._ack(conn, "subscribe", False, err, req_id))
                return
        for t in args:
            if t in conn.topics:
                conn._enqueue(self._ack(conn, "subscribe", False,
                                        f"error:already subscribed,topic:{t}", req_id))
                return
        new = list(dict.fromkeys(args))
        if sum(map(len, conn.topics)) + sum(map(len, new)) >= MAX_ARGS_CHARS:
            conn._enqueue(self._ack(conn, "subscribe", False, "error:args length exceeded",
                                    req_id))
            return
        for t in new:
            conn.topics.add(t)
            self._subs[(cat, t)].append(conn)
        conn._enqueue(self._ack(conn, "subscribe", True, ok_msg, req_id))
        for t in new:
            kind, _, rest = t.partition(".")
            if kind == "tickers":
                conn._enqueue(self._ticker_frame(self.markets[cat][rest], snapshot=True,
                                                 fields=None))
            elif kind == "orderbook":
                conn._enqueue(ws_frame(_dumps(self.books.subscribed(cat, t, self._msg_ts()))))
            elif kind == "kline":
                interval, _, sym = rest.partition(".")
                self.markets[cat][sym].track(interval)
                self._kline_subs[(cat, sym)] += 1
        self._sub_changed.unpark_all()

    def _unsubscribe(self, conn: Connection, args: list[str], req_id) -> None:
        cat = conn.category
        for t in args:
            if t in conn.topics:
                conn.topics.discard(t)
                self._drop_sub(conn, t)
        conn._enqueue(self._ack(conn, "unsubscribe", True,
                                "" if cat == "linear" else "unsubscribe", req_id))
        self._sub_changed.unpark_all()

    async def wait_subscribed(self, category: str, topics: Iterable[str]) -> Connection:
        """Wait until one live connection of ``category`` has all ``topics``; return it."""
        want = set(topics)
        while True:
            for c in self.connections:
                if c.category == category and want <= c.topics:
                    return c
            await self._sub_changed.park()

    async def wait_connections(self, category: str | None = None, n: int = 1) -> None:
        """Wait until at least ``n`` live connections (of ``category``) exist."""
        while self.connection_count(category) < n:
            await self._sub_changed.park()

    def subscribers(self, category: str, topic: str) -> list[Connection]:
        return list(self._subs.get((category, topic), ()))

    # ------------------------------------------------------------------ publishing
    def _msg_ts(self) -> int:
        return time.time_ns() // 1_000_000 if self.stamp else now_ms()

    def _publish(self, category: str, topic: str, payload: dict) -> None:
        subs = self._subs.get((category, topic))
        if not subs or (category, topic) in self._paused:
            return
        frame = ws_frame(_dumps(payload))
        for c in subs:
            c._enqueue(frame)

    def trade(self, category: str, symbol: str, price=None, size=None, side=None, ts=None,
              count: int = 1) -> list[dict]:
        """Make ``count`` trades (one publicTrade message); record them; return them."""
        inst = self._inst(category, symbol)
        if count < 1 or count > TRADES_PER_MESSAGE_MAX:
            raise ValueError(f"count must be 1..{TRADES_PER_MESSAGE_MAX}")
        if ts is None:
            ts = now_ms()
        rng = self._rng
        linear = category == "linear"
        pd, qd = inst.pd, inst.qd
        fixed_price = None if price is None else to_int(price, pd)
        fixed_size = None if size is None else to_int(size, qd)
        inst.seq += 1
        seq = inst.seq
        omit = self.omit_optional_trade_fields
        trades = []
        tracked = [(candles, period_start(ts, iv)) for iv, candles in inst.candles.items()]
        for _ in range(count):
            if fixed_price is None:
                p = inst.price + rng.randint(-2, 2) * inst.step()
                if p < 1:
                    p = 1
            else:
                p = fixed_price
            q = fixed_size if fixed_size is not None else inst.random_size(rng.random())
            s = side or ("Buy" if rng.random() < 0.5 else "Sell")
            if linear:
                tid = inst.next_uuid()
            else:
                inst.exec_num += 1
                tid = str(inst.exec_num)
            t = {"T": ts, "s": symbol, "S": s, "v": fmt(q, qd), "p": fmt(p, pd)}
            if linear:
                t["L"] = inst.tick_direction(p)
            t["i"] = tid
            if not omit:
                t["BT"] = False
                t["RPI"] = False
                t["seq"] = seq
            if p != inst.price:
                inst.prev_price = inst.price
            inst.price = p
            trades.append(t)
            inst.history.append(t)
            for candles, start in tracked:
                c = candles.get(start)
                if c is None:
                    candles[start] = Candle(start, p, q, ts)
                else:
                    c.add(p, q, ts)
        self._note_push(inst, count)
        msg_ts = self._msg_ts()
        self._publish(category, "publicTrade." + symbol,
                      {"topic": "publicTrade." + symbol, "type": "snapshot", "ts": msg_ts,
                       "data": trades})
        self._publish_klines(inst, ts, msg_ts)
        return trades

    def _publish_klines(self, inst: Instrument, ts: int, msg_ts: int) -> None:
        """After trades at ``ts``: confirm the previous candle on the first trade after the
        boundary, then push the live candle, for every subscribed kline topic."""
        category, symbol, subs = inst.category, inst.symbol, self._subs
        if inst.live_lo <= ts <= inst.live_hi and not self._kline_subs.get((category, symbol)):
            return  # same candles as before and nobody to tell (the common fast case)
        lo, hi = -1, 1 << 62
        for interval, candles in inst.candles.items():
            start = period_start(ts, interval)
            prev = inst.live.get(interval)
            topic = f"kline.{interval}.{symbol}"
            if prev is None or start > prev:
                inst.live[interval] = start
                if prev is not None and prev in candles and subs.get((category, topic)):
                    self._publish(category, topic, {
                        "topic": topic, "type": "snapshot", "ts": msg_ts,
                        "data": [inst.candle_dict(candles[prev], interval, True, msg_ts)]})
            live = inst.live[interval]
            lo, hi = max(lo, live), min(hi, period_end(live, interval))
            if subs.get((category, topic)):
                self._publish(category, topic, {
                    "topic": topic, "type": "snapshot", "ts": msg_ts,
                    "data": [inst.candle_dict(candles[live], interval, False, msg_ts)]})
        inst.live_lo, inst.live_hi = lo, hi

    def _fast_message(self, inst: Instrument, k: int, ts: int, msg_ts: int,
                      id_suffix: str = "") -> None:
        """run_market's path: like ``trade(count=k)`` with random values, JSON built by hand
        and history kept as tuples (``history()`` turns them into dicts)."""
        rnd = self._rng.random
        linear = inst.category == "linear"
        omit = self.omit_optional_trade_fields
        inst.seq += 1
        seq = inst.seq
        step = inst.step()
        sizes = inst.sizes
        nsizes = len(sizes)
        pstr = inst.price_str
        hist_append = inst.history.append
        if inst.tracked_ts == ts and inst.tracked_n == len(inst.candles):
            tracked = inst.tracked
        else:
            tracked = [(candles, period_start(ts, iv)) for iv, candles in inst.candles.items()]
            inst.tracked, inst.tracked_ts, inst.tracked_n = tracked, ts, len(inst.candles)
        sym = inst.symbol
        parts = []
        for _ in range(k):
            r = rnd()
            p = inst.price + (int(r * 5) - 2) * step
            if p < 1:
                p = 1
            q, qs = sizes[int(rnd() * nsizes)]
            side = "Buy" if r * 1000 % 1 < 0.5 else "Sell"
            ps = pstr(p)
            if linear:
                tick = inst.tick_direction(p)
                inst.exec_num += 1
                tid = inst.uuid_prefix + str(inst.exec_num) + id_suffix
                if omit:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"%s","i":"%s"}'
                                 % (ts, sym, side, qs, ps, tick, tid))
                else:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"%s","i":"%s",'
                                 '"BT":false,"RPI":false,"seq":%d}'
                                 % (ts, sym, side, qs, ps, tick, tid, seq))
            else:
                tick = None
                inst.exec_num += 1
                tid = str(inst.exec_num) + id_suffix
                if omit:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","i":"%s"}'
                                 % (ts, sym, side, qs, ps, tid))
                else:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","i":"%s",'
                                 '"BT":false,"RPI":false,"seq":%d}'
                                 % (ts, sym, side, qs, ps, tid, seq))
            if p != inst.price:
                inst.prev_price = inst.price
                inst.price = p
            hist_append((ts, sym, side, qs, ps, tick, tid, None if omit else seq))
            for candles, start in tracked:
                c = candles.get(start)
                if c is None:
                    candles[start] = Candle(start, p, q, ts)
                else:
                    c.add(p, q, ts)
        self._note_push(inst, k)
        topic = "publicTrade." + sym
        category = inst.category
        subs = self._subs.get((category, topic))
        if subs and (category, topic) not in self._paused:
            frame = ws_frame(('{"topic":"%s","type":"snapshot","ts":%d,"data":[%s]}'
                              % (topic, msg_ts, ",".join(parts))).encode())
            for c in subs:
                c._enqueue(frame)
        self._publish_klines(inst, ts, msg_ts)

    def push_book(self, category: str, topic: str, *, unchanged: bool = False) -> None:
        """One push of ``topic``'s book to its subscribers (a fault injected with
        ``books.inject`` is taken by it; ``unchanged``: see ``BookFeed.push``)."""
        for payload in self.books.push(category, topic, self._msg_ts(), unchanged=unchanged):
            self._publish(category, topic, payload)

    def _ticker_frame(self, inst: Instrument, snapshot: bool, fields: dict | None) -> bytes:
        inst.cs += 1
        data = dict(inst.ticker) if snapshot else {"symbol": inst.symbol, **(fields or {})}
        return ws_frame(_dumps({"topic": "tickers." + inst.symbol,
                                "type": "snapshot" if snapshot else "delta",
                                "data": data, "cs": inst.cs, "ts": self._msg_ts()}))

    def set_ticker(self, category: str, symbol: str, **fields) -> None:
        """Update ticker fields (values become strings); push delta (linear, only changed
        fields; nothing if none changed) or snapshot (spot)."""
        inst = self._inst(category, symbol)
        changed = {}
        for k, v in fields.items():
            v = str(v)
            if inst.ticker.get(k) != v:
                inst.ticker[k] = v
                changed[k] = v
        topic = "tickers." + symbol
        subs = self._subs.get((category, topic))
        if not subs or (category, topic) in self._paused:
            return
        if category == "linear":
            if not changed:
                return
            frame = self._ticker_frame(inst, snapshot=False, fields=changed)
        else:
            frame = self._ticker_frame(inst, snapshot=True, fields=None)
        for c in subs:
            c._enqueue(frame)

    def ticker(self, category: str, symbol: str) -> dict:
        return dict(self._inst(category, symbol).ticker)

    def history(self, category: str, symbol: str) -> list[dict]:
        return [_trade_dict(t) for t in self._inst(category, symbol).history]

    def klines(self, category: str, symbol: str, interval: str) -> list[dict]:
        """The fake's candles (oldest first) as WS-style dicts; ``confirm`` is True for all
        but the newest."""
        if interval not in INTERVALS:
            raise ValueError(f"bad interval {interval!r}")
        inst = self._inst(category, symbol)
        candles = inst.aggregate(interval)
        starts = sorted(candles)
        ts = now_ms()
        return [inst.candle_dict(candles[s], interval, s != starts[-1], ts) for s in starts]

    async def flush(self) -> None:
        """Wait until everything queued so far is written to the sockets."""
        for c in list(self.connections):
            await c.wait_drained()

    # ------------------------------------------------------------------ faults
    def _pick(self, category):
        return [c for c in self.connections if category is None or c.category == category]

    def drop_connections(self, category: str | None = None) -> int:
        conns = self._pick(category)
        for c in conns:
            c.drop()
        return len(conns)

    def close_connections(self, category: str | None = None, code: int = 1000,
                          reason: str = "") -> int:
        conns = self._pick(category)
        for c in conns:
            c.close(code, reason)
        return len(conns)

    def send_raw(self, category: str | None, data: bytes | str, binary: bool = False) -> None:
        """Send one frame with ``data`` as payload (text frame unless ``binary``; bytes are
        sent as they are, so invalid UTF-8 in a text frame is possible)."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        frame = ws_frame(payload, 0x2 if binary else 0x1)
        for c in self._pick(category):
            c._enqueue(frame)

    def pause_topic(self, category: str, topic: str) -> None:
        self._paused.add((category, topic))

    def resume_topic(self, category: str, topic: str) -> None:
        self._paused.discard((category, topic))

    # ------------------------------------------------------------------ REST
    def _rest(self, method: str, target: str) -> tuple[int, bytes]:
        parts = urlsplit(target)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.rest_requests.append((path, query))
        if not self.reachable or path in self.rest_failing:
            return 503, b'{"error":"service unavailable"}'
        raw = self.rest_bodies.get(path)
        if raw:
            return 200, raw.pop(0)
        if self.rest_rate_limit is not None:
            n, window = self.rest_rate_limit
            now = trio.current_time()
            dq = self._rest_times
            while dq and dq[0] <= now - window:
                dq.popleft()
            if len(dq) >= n:
                return 403, self._envelope(None, 10006, "Too many visits!")
            dq.append(now)
        handler = {
            "/v5/market/time": self._rest_time,
            "/v5/market/instruments-info": self._rest_instruments,
            "/v5/market/kline": self._rest_kline,
            "/v5/market/recent-trade": self._rest_recent,
        }.get(path)
        if handler is None:
            return 404, b'{"error":"not found"}'
        if method != "GET":
            return 405, b'{"error":"method not allowed"}'
        try:
            result = handler(query)
        except _RestError as e:
            return 200, self._envelope({}, e.code, e.msg)
        return 200, self._envelope(result)

    def _envelope(self, result, code: int = 0, msg: str = "OK") -> bytes:
        return _dumps({"retCode": code, "retMsg": msg, "result": {} if result is None else result,
                       "retExtInfo": {}, "time": now_ms()})

    def _category(self, q) -> str:
        cat = q.get("category")
        if cat not in self.markets:
            raise _RestError(10001, "Illegal category")
        return cat

    def _symbol(self, cat, q) -> Instrument:
        sym = q.get("symbol")
        if not sym:
            raise _RestError(10001, "params error: symbol is required")
        inst = self.markets[cat].get(sym)
        if inst is None:
            raise _RestError(10001, "Not supported symbols")
        return inst

    @staticmethod
    def _int(q, name, default, lo, hi) -> int:
        v = q.get(name)
        if v in (None, ""):
            return default
        try:
            n = int(v)
        except ValueError:
            raise _RestError(10001, f"params error: {name} invalid") from None
        return max(lo, min(hi, n))

    def _rest_time(self, q) -> dict:
        ms = now_ms()
        return {"timeSecond": str(ms // 1000), "timeNano": str(ms * 1_000_000)}

    def _rest_instruments(self, q) -> dict:
        cat = self._category(q)
        items = list(self.markets[cat].values())
        if q.get("symbol"):
            items = [i for i in items if i.symbol == q["symbol"]]
        if q.get("status"):
            items = [i for i in items if i.status == q["status"]]
        if q.get("baseCoin"):
            items = [i for i in items if i.base == q["baseCoin"]]
        if cat == "spot":
            return {"category": cat, "list": [i.info() for i in items]}
        limit = self._int(q, "limit", 500, 1, 1000)
        offset = 0
        cursor = q.get("cursor")
        if cursor:
            try:
                offset = int(base64.urlsafe_b64decode(cursor.encode()).decode().split("=")[1])
            except Exception:
                raise _RestError(10001, "params error: cursor invalid") from None
        page = items[offset: offset + limit]
        nxt = ""
        if offset + limit < len(items):
            nxt = base64.urlsafe_b64encode(f"offset={offset + limit}".encode()).decode()
        return {"category": cat, "list": [i.info() for i in page], "nextPageCursor": nxt}

    def _rest_kline(self, q) -> dict:
        cat = self._category(q)
        inst = self._symbol(cat, q)
        interval = q.get("interval")
        if interval not in INTERVALS:
            raise _RestError(10001, "Invalid period!")
        limit = self._int(q, "limit", 200, 1, 1000)
        start = self._int(q, "start", None, 0, 1 << 62)
        end = self._int(q, "end", None, 0, 1 << 62)
        candles = inst.aggregate(interval)
        rows = []
        for s in sorted(candles, reverse=True):
            if end is not None and s > end:
                continue
            if start is not None and s < start:
                break
            rows.append(inst.candle_row(candles[s]))
            if len(rows) >= limit:
                break
        return {"category": cat, "symbol": inst.symbol, "list": rows}

    def _rest_recent(self, q) -> dict:
        cat = self._category(q)
        inst = self._symbol(cat, q)
        default, hi = (500, 1000) if cat == "linear" else (60, 60)
        limit = self._int(q, "limit", default, 1, hi)
        hist = inst.history
        # history[i] is trade number appended - len(hist) + i; the lag hides the newest ones
        newest = min(len(hist), self._visible(inst) - (inst.appended - len(hist))) - 1
        out = []
        for i in range(newest, max(-1, newest - limit), -1):
            t = _trade_dict(hist[i])
            row = {"execId": t["i"], "symbol": t["s"], "price": t["p"], "size": t["v"],
                   "side": t["S"], "time": str(t["T"]), "isBlockTrade": t.get("BT", False),
                   "isRPITrade": t.get("RPI", False)}
            if "seq" in t:
                row["seq"] = str(t["seq"])
            out.append(row)
        return {"category": cat, "list": out}

    # ------------------------------------------------------------------ random market
    async def run_market(self, category: str, symbols: Iterable[str] | None = None,
                         rate: float = 1000.0, trades_per_message: int = 1,
                         duration: float | None = None, count: int | None = None,
                         tickers: bool = True, wait_for_subscribers: bool = False) -> int:
        """Seeded random walk: ``rate`` publicTrade messages/s in total over ``symbols``
        (round-robin), ``rate <= 0`` = flat out (as fast as the sockets take it).  Pacing
        (``FakeBybit.pacing``): "batched" sleeps with ``trio.sleep_until`` (whole
        milliseconds through epoll) and makes the whole backlog due at each wake-up before
        the next checkpoint, so several messages share a write; "even" (real time only, a
        Linux timerfd: :class:`~streamer_bybit.simulator.pacing.EvenTicker`) makes one message every
        ``1 / rate`` s and writes every message on its own.  Tickers (if asked) get a delta
        per symbol at most every 100 ms.  Stops after ``count`` messages or ``duration``
        seconds (trio time); returns the number of messages made.
        ``wait_for_subscribers``: idle while no connection of the category is subscribed to
        anything."""
        syms = list(symbols) if symbols is not None else [
            s for s, i in self.markets[category].items() if i.status == "Trading"]
        if not syms:
            return 0
        insts = [self._inst(category, s) for s in syms]
        start = trio.current_time()
        stop_at = math.inf if duration is None else start + duration
        sent = 0
        paced = 0  # messages made since ``start`` (reset after waiting for subscribers)
        k = 0
        last_ticker = {s: -math.inf for s in syms}
        n_syms = len(syms)
        even = rate > 0 and self.pacing == "even"
        ticker: EvenTicker | None = None
        try:
            while True:
                now = trio.current_time()
                if now >= stop_at or (count is not None and sent >= count):
                    return sent
                if wait_for_subscribers and not any(
                        c.category == category and c.topics for c in self.connections):
                    if ticker is not None:
                        ticker.close()
                        ticker = None
                    await self._sub_changed.park()
                    start, paced = trio.current_time(), 0
                    continue
                if even:
                    if ticker is None:
                        ticker = EvenTicker(1.0 / rate)
                    due = 0
                    with trio.move_on_at(stop_at):
                        due = min(await ticker.wait(), 10_000)
                    if not due:
                        continue
                    now = trio.current_time()
                    if count is not None:
                        due = min(due, count - sent)
                else:
                    due = self._batched_due(rate, now, start, paced)
                    if not due:
                        await trio.sleep_until(min(stop_at, start + paced / rate))
                        continue
                    if count is not None:
                        due = min(due, count - sent)
                sent += due
                paced += due
                await self._make_messages(insts, due, k, tickers, last_ticker, now,
                                          trades_per_message)
                k = (k + due) % n_syms
        finally:
            if ticker is not None:
                ticker.close()

    @staticmethod
    def _batched_due(rate: float, now: float, start: float, paced: int) -> int:
        """Messages due now under batched pacing (0: sleep until the next one)."""
        if rate <= 0:
            return 512
        due = int((now - start) * rate) + 1 - paced
        if due <= 0:
            if now < start + paced / rate:
                return 0
            # Woken at the due time, float rounding can still make due 0 (3,000/s:
            # 0.001 * 3000 = 2.9999...); the message is due, so make it, or the loop would
            # sleep until the current time forever.
            return 1
        return min(due, 10_000)

    async def _make_messages(self, insts: list[Instrument], due: int, k: int, tickers: bool,
                             last_ticker: dict[str, float], now: float,
                             trades_per_message: int) -> None:
        """``due`` messages round-robin from ``insts[k]``, then wait for slow connections."""
        ts = now_ms()
        msg_ts = self._msg_ts()
        id_suffix = f"@{time.time_ns() // 1000}" if self.stamp else ""
        fast = self._fast_message
        n_syms = len(insts)
        for _ in range(due):
            inst = insts[k]
            k += 1
            if k == n_syms:
                k = 0
            fast(inst, trades_per_message, ts, msg_ts, id_suffix)
            if tickers and now - last_ticker[inst.symbol] >= 0.1:
                last_ticker[inst.symbol] = now
                self._random_ticker(inst)
        for c in self.connections:
            if c._out_bytes > _HIGH_WATER:
                await c._wait_space()
        await trio.lowlevel.checkpoint()

    def _random_ticker(self, inst: Instrument) -> None:
        p, pd = inst.price, inst.pd
        f = {"lastPrice": fmt(p, pd)}
        if inst.category == "linear":
            f.update(bid1Price=fmt(max(1, p - 1), pd), ask1Price=fmt(p, pd),
                     markPrice=fmt(p, pd),
                     bid1Size=fmt(self._rng.randint(1, 5000), inst.qd),
                     ask1Size=fmt(self._rng.randint(1, 5000), inst.qd))
        self.set_ticker(inst.category, inst.symbol, **f)


def _trade_dict(t) -> dict:
    """History entries are dicts (``trade()``) or tuples (``run_market``'s fast path)."""
    if isinstance(t, dict):
        return t
    ts, sym, side, qs, ps, tick, tid, seq = t
    d = {"T": ts, "s": sym, "S": side, "v": qs, "p": ps}
    if tick is not None:
        d["L"] = tick
    d["i"] = tid
    if seq is not None:
        d["BT"] = False
        d["RPI"] = False
        d["seq"] = seq
    return d


class _RestError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        self.code = code
        self.msg = msg
