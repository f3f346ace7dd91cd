"""The listening socket's front door: each connection's request head is read here, bounded
in bytes (:data:`MAX_REQUEST_HEAD`) and time (``auth_timeout``, as trio-websocket's own
handshake was); a WebSocket upgrade then goes to trio-websocket and the gate, anything else
to the web view's pages when ``web = true`` (:mod:`streamer_websocket.web.pages`), or is
answered 400 as before.

The head is read before trio-websocket sees the connection, so it is replayed to it
(:class:`ReplayStream`), and the peer's address is handed to the gate explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

from streamer_websocket.config import WebSocketConfig
from streamer_websocket.web.http import (
    HeadTooLarge,
    RequestHead,
    parse_head,
    plain_response,
)

#: Bytes a request head (request line and headers) may take; a larger one is answered 431.
MAX_REQUEST_HEAD = 8192

GateHandler = Callable[[WebSocketRequest, str], Awaitable[None]]
PageHandler = Callable[[trio.abc.Stream, RequestHead, str], Awaitable[None]]


class ReplayStream(trio.abc.Stream):
    """``stream``, whose first reads return ``head`` (bytes already read from it).

    It can also write without waiting (:meth:`write_nowait`, plain TCP only): the sink's
    tick writes to its batched clients so, with no task woken per client. What the socket
    does not take at once is the backlog, which :meth:`send_all` writes before anything
    else, so frames never interleave.
    """

    def __init__(self, stream: trio.abc.Stream, head: bytes) -> None:
        self.stream = stream
        self._head = head
        #: Bytes accepted by write_nowait that the socket has not taken yet.
        self._backlog = b""
        #: A send_all is in progress.
        self._sending = False
        # Its socket, for write_nowait; none over TLS.
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None

    @property
    def backlogged(self) -> bool:
        return bool(self._backlog)

    def write_nowait(self, data: bytes) -> bool:
        """Write ``data`` at once: True if accepted (what the socket did not take is the
        backlog), False if not (TLS, a send in progress, a backlog, or the socket failed:
        send it with :meth:`send_all`, which also reports the failure)."""
        if self._socket is None or self._sending or self._backlog:
            return False
        fd = self._socket.fileno()  # -1 once closed: the number is never reused under us
        if fd < 0:
            return False
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            self._backlog = data[sent:]
        return True

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._head:
            size = len(self._head) if max_bytes is None else max_bytes
            data, self._head = self._head[:size], self._head[size:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._sending = True
        try:
            if self._backlog:
                backlog, self._backlog = self._backlog, b""
                await self.stream.send_all(backlog)
            if data:
                await self.stream.send_all(data)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


def peer_of(stream: trio.abc.Stream) -> str:
    """The TCP peer's address (no port) of a plain or TLS stream."""
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(transport, "socket", None)
    if sock is None:
        return repr(stream)
    return str(sock.getpeername()[0])


async def read_head(stream: trio.abc.Stream, limit: int) -> bytes:
    """Bytes up to and including the blank line ending the head (and whatever came with
    them); raises :class:`HeadTooLarge` past ``limit``, EOFError if the peer closes first."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > limit:
            raise HeadTooLarge(len(buffer))
        data = await stream.receive_some(4096)
        if not data:
            raise EOFError
        buffer += data
    if buffer.index(b"\r\n\r\n") + 4 > limit:
        raise HeadTooLarge(len(buffer))
    return bytes(buffer)


class FrontDoor:
    def __init__(self, config: WebSocketConfig, gate: GateHandler,
                 pages: PageHandler | None) -> None:
        self.config = config
        self._gate = gate
        self._pages = pages

    async def handle(self, stream: trio.abc.Stream) -> None:
        """``trio.serve_listeners``' handler: one connection, from its head to its end."""
        config = self.config
        try:
            peer = peer_of(stream)
            head: RequestHead | None = None
            with trio.move_on_after(config.auth_timeout):
                try:
                    raw = await read_head(stream, MAX_REQUEST_HEAD)
                except HeadTooLarge:
                    await stream.send_all(plain_response(431, "request head too large"))
                    return
                head = parse_head(raw)
                if head is None:
                    await stream.send_all(plain_response(400, "bad request"))
                    return
            if head is None:
                return  # no head within auth_timeout
            if head.is_websocket_upgrade or self._pages is None:
                await self._websocket(ReplayStream(stream, raw), peer)
            else:
                await self._pages(stream, head, peer)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            with trio.move_on_after(config.send_timeout) as closing:
                closing.shield = True
                await _close(stream)

    async def _websocket(self, stream: ReplayStream, peer: str) -> None:
        async with trio.open_nursery() as nursery:
            request: WebSocketRequest | None = None
            # The handshake is in the replay buffer; wsproto answers a bad one (400) and
            # closes, and then no request ever comes: hence the bound.
            with trio.move_on_after(self.config.auth_timeout):
                request = await wrap_server_stream(
                    nursery, stream, max_message_size=self.config.max_client_message)
            if request is not None:
                await self._gate(request, peer)
            nursery.cancel_scope.cancel()


async def _close(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
