"""One WebSocket connection of the fake: its queue of outgoing frames and its three tasks.

Incoming frames are parsed by websockets' sans-I/O ``ServerProtocol``; outgoing data frames
are built once (:func:`ws_frame`) and shared by every subscriber, and the frames a connection
has queued are written with one ``send_all`` (or one TLS record each, see
``FakeBybit.one_record_per_message``). What a client says goes to the fake
(``FakeBybit.on_client_message``); a connection that ends is forgotten by it
(``FakeBybit.forget``).
"""

from __future__ import annotations

import math
import socket
import ssl
import struct
import sys
from typing import TYPE_CHECKING, cast

import trio
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from .tls import TLSServerStream

if TYPE_CHECKING:
    from .sessions import WebSocketSessions

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

#: run_market waits while a connection has more than this many bytes queued.
HIGH_WATER = 1 << 20
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


_DISCONNECTS = (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                ssl.SSLError)


def _only(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """True if ``exc``, or every leaf of an exception group, is one of ``types``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, types) for inner in exc.exceptions)
    return isinstance(exc, types)


class Connection:
    """A live WebSocket connection of the fake (see ``FakeBybit.connections``)."""

    def __init__(self, fake: WebSocketSessions, category: str, stream, tls, conn_id: str, protocol):
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
    def enqueue(self, frame: bytes) -> None:
        """Queue ``frame`` for the writer (nothing once the connection is closing)."""
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

    @property
    def backlogged(self) -> bool:
        """More than :data:`HIGH_WATER` bytes queued: a producer should :meth:`wait_space`."""
        return self._out_bytes > HIGH_WATER

    async def wait_drained(self) -> None:
        while self.busy and not self.closed:
            await self._drained.park()

    async def wait_space(self) -> None:
        """Until the queue is back under :data:`HIGH_WATER` bytes (or the connection ends)."""
        while self._out_bytes > HIGH_WATER and not self.closed:
            await self._drained.park()

    # -- tasks ---------------------------------------------------------------------
    async def run(self, handshake_response: bytes, early_data: bytes) -> None:
        """Send the 101 response, then write, read and watch for idleness until the
        connection ends; a client going away ends it quietly. ``early_data``: bytes the
        client sent behind its request head."""
        try:
            await self._io.send_all(handshake_response)
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    nursery.start_soon(self._idle_watch)
                    if early_data:
                        self._protocol.receive_data(early_data)
                        for ev in cast("list[Frame]", self._protocol.events_received()):
                            if ev.opcode in (Opcode.TEXT, Opcode.BINARY):
                                self.messages_received += 1
                                self.fake.on_client_message(self, ev.data)
                        self._pump_protocol()
                    nursery.start_soon(self._reader)
        except BaseException as exc:
            # A client going away is normal for the fake; anything else is a bug to surface.
            # (Not `except*`: the fake must import on Python 3.10 too.)
            if not _only(exc, _DISCONNECTS):
                raise
        finally:
            self.closed = True
            self.fake.forget(self)
            self._drained.unpark_all()

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
                    self.fake.on_client_message(self, ev.data)
                elif op is Opcode.PING or op is Opcode.PONG:
                    self._activity()
            self._pump_protocol()
            if protocol.state is State.CLOSED:
                # client closed (or answered our close): flush what is queued then stop
                self._closing = True
                self.fake.forget(self)
                await self.wait_drained()
                raise _Closed

    def _activity(self) -> None:
        s = self._idle_scope
        if s is not None and self.fake.idle_timeout is not None:
            s.deadline = trio.current_time() + self.fake.idle_timeout

    def idle_timeout_changed(self) -> None:
        """The fake's ``idle_timeout`` changed: the idle clock restarts now with it."""
        s = self._idle_scope
        if s is not None:
            t = self.fake.idle_timeout
            s.deadline = math.inf if t is None else trio.current_time() + t

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
                raise _Closed  # idle: drop (the request handler closes the socket)

    # -- faults --------------------------------------------------------------------
    def drop(self) -> None:
        """Abort the TCP connection (RST, no close frame)."""
        self.fake.forget(self)
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
        self.fake.forget(self)
        try:
            self._protocol.send_close(code, reason)
        except Exception:
            self.drop()
            return
        self._pump_protocol()
        self._closing = True
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, trio.current_time() + 5.0)
