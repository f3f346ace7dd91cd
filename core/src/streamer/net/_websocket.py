"""A thin trio WebSocket client around websockets' sans-I/O ``ClientProtocol``.

Why not trio-websocket or ``websockets.trio``: both pay a scheduler pass per message, which
caps ingest at a fraction of what the socket delivers (docs/background.md, "Ingest"). Here
one ``receive()`` is one socket read: every complete message of that read comes back as one
list, so the caller can decode and emit the whole read as a single batch.

Frames: market-data servers (Bybit's among them) send their data as complete, unmasked FIN
text frames. After the opening handshake :class:`MessageReader` (``_frames``) parses frame
headers itself and slices those payloads out of the read directly; websockets' parser cost
~31% of the CPU flat out (docs/performance.md, item 7). Every other frame (ping, close,
binary, fragments, anything malformed or oversize) goes to ``ClientProtocol.receive_data``
whole, so control frames, errors and the closing handshake behave exactly as websockets
defines them. Nothing here knows an exchange: application-level pings, subscriptions and
URLs belong to the plugin that uses the client.

TLS: :func:`open_byte_stream` is the only place that knows about TLS. wss:// uses the
drain-all :class:`~streamer.net.TLSStream` (one socket read per ``receive_some``,
docs/background.md, "TLS"); anything that is a ``trio.abc.Stream`` can replace it there.
"""

from __future__ import annotations

import os
import ssl
from typing import Final

import trio
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from streamer.net._frames import MAX_MESSAGE, MessageReader, WebSocketClosed
from streamer.net._http import default_ssl_context
from streamer.net._tls import open_tls_over_tcp_stream

READ_SIZE: Final = 65536  # 64 KiB reads measured faster than 256 KiB (docs/background.md)

_HTTP_HEAD_END: Final = b"\r\n\r\n"


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade (HTTP status or protocol error), or
    the TLS handshake failed (certificate, hostname, peer closed)."""


async def open_byte_stream(
    host: str, port: int, secure: bool, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """TCP, or drain-all TLS over TCP for wss:// (handshake done, SNI + hostname checked).

    A TLS handshake failure raises ``trio.BrokenResourceError`` (chained to the
    ``ssl.SSLError``); :meth:`WebSocket.connect` reports it as :class:`HandshakeError`.
    """
    if not secure:
        return await trio.open_tcp_stream(host, port)
    return await open_tls_over_tcp_stream(host, port, ssl_context or default_ssl_context())


def _split_after_http_head(tail: bytes, data: bytes) -> int:
    """Index in ``data`` just past the end of the HTTP head (``tail``: bytes fed before)."""
    joined = tail + data
    index = joined.find(_HTTP_HEAD_END)
    if index < 0:
        return -1
    return index + len(_HTTP_HEAD_END) - len(tail)


class WebSocket:
    """One client WebSocket. One task calls :meth:`receive`; any task may :meth:`send_text`."""

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._send_lock = trio.Lock()
        self._pending: list[bytes] = []  # messages read along with the handshake
        self._reader = MessageReader(protocol)
        self._closed: WebSocketClosed | None = None
        #: The plain TCP socket under ``stream``, read directly by ``receive(checkpointed=
        #: True)``; None over TLS (its records go through the TLS stream).
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        #: Bytes the latest :meth:`receive` read from the stream (a read-coalescing caller
        #: reads again at once after a large read: more is likely waiting).
        self.last_read_size = 0
        #: The latest ``receive(checkpointed=True)`` found the plain TCP socket empty and
        #: waited for data (a read-coalescing caller's wait gathered nothing).
        self.found_empty = False

    @property
    def binary_frames(self) -> int:
        """Binary data frames received and dropped (the client delivers text messages only)."""
        return self._reader.binary_frames

    @classmethod
    async def connect(cls, url: str, *, ssl_context: ssl.SSLContext | None = None) -> WebSocket:
        """Open the socket and complete the opening handshake (bound it with a cancel scope).

        Raises ``OSError`` (TCP) or :class:`HandshakeError` (TLS, HTTP upgrade, connection
        lost during either).
        """
        uri = parse_uri(url)
        try:
            stream = await open_byte_stream(uri.host, uri.port, uri.secure, ssl_context)
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__ or exc
            raise HandshakeError(f"TLS handshake with {uri.host} failed: {cause}") from exc
        try:
            protocol = ClientProtocol(uri, max_size=MAX_MESSAGE)
            ws = cls(stream, protocol)
            protocol.send_request(protocol.connect())
            await ws._flush()
            await ws._handshake()
            return ws
        except WebSocketClosed as exc:
            await trio.aclose_forcefully(stream)
            raise HandshakeError(f"connection lost during the WebSocket handshake: {exc}") from exc
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _handshake(self) -> None:
        # Only the HTTP head goes through websockets here: the frames after it belong to the
        # MessageReader, which must start at a frame boundary.
        protocol = self._protocol
        tail = b""
        while True:
            try:
                data = bytes(await self._stream.receive_some(READ_SIZE))  # no copy for bytes
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise HandshakeError(
                    f"connection lost during the WebSocket handshake: {exc!r}"
                ) from exc
            rest = b""
            if data:
                split = _split_after_http_head(tail, data)
                if split >= 0:
                    data, rest = data[:split], data[split:]
                else:
                    tail = (tail + data)[-3:]
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for event in protocol.events_received():
                if isinstance(event, Response):
                    if protocol.handshake_exc is not None:
                        raise HandshakeError(
                            f"upgrade refused: {protocol.handshake_exc}"
                        ) from protocol.handshake_exc
                else:
                    self._reader.take_frame(event, self._pending)
            if protocol.state is State.OPEN:
                self._reader = MessageReader(protocol)  # extensions are known now
                if rest:
                    self._pending.extend(self._reader.receive_data(rest))
                await self._flush()
                return
            if rest:  # not upgraded: the rest is the error response's body
                protocol.receive_data(rest)
                protocol.events_received()
            await self._flush()
            if protocol.handshake_exc is not None:
                raise HandshakeError(
                    f"upgrade refused: {protocol.handshake_exc}"
                ) from protocol.handshake_exc
            if not data or protocol.state is State.CLOSED:
                raise HandshakeError("connection closed during the WebSocket handshake")

    async def receive(self, *, checkpointed: bool = False) -> list[bytes]:
        """Wait for one socket read; return every complete message it held (maybe none).

        Each item is the UTF-8 payload of one text message, as ``bytes``. Raises
        :class:`WebSocketClosed` once the connection is over.

        ``checkpointed``: the caller has just passed a checkpoint (a read-coalescing wait),
        so over plain TCP the socket is read at once, without trio's own checkpoint after a
        successful read: that is a second pass of the scheduler, with its ``epoll_wait``,
        per read. Only when nothing is there yet does it wait as usual.
        """
        if self._pending:
            pending, self._pending = self._pending, []
            return pending
        if self._closed is not None:
            raise self._closed
        try:
            data = self._read_now() if checkpointed else None
            self.found_empty = data is None and checkpointed and self._socket is not None
            if data is None:
                data = bytes(await self._stream.receive_some(READ_SIZE))  # no copy for bytes
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = WebSocketClosed(f"connection lost: {exc!r}")
            raise self._closed from exc
        self.last_read_size = len(data)
        reader = self._reader
        if data:
            out = reader.receive_data(data)
            if not reader.fed_protocol:
                # Only text frames, sliced by hand: websockets saw none of it, so it has
                # nothing to send and its state is unchanged (the usual read).
                return out
        else:
            out = reader.receive_eof()
        reader.fed_protocol = False
        protocol = self._protocol
        self._closed = self._closed or reader.closed
        await self._flush()  # pongs to server pings, the reply to a close frame
        if not data and self._closed is None:
            self._closed = WebSocketClosed("connection closed without a close frame")
        if protocol.state is State.CLOSED and self._closed is None:
            self._closed = WebSocketClosed(f"protocol error: {protocol.close_exc}")
        if self._closed is not None and not out:
            await trio.aclose_forcefully(self._stream)
            raise self._closed
        return out

    def _read_now(self) -> bytes | None:
        """One non-blocking read of the plain TCP socket: its bytes (b"" at EOF), or None
        when nothing is waiting (or over TLS). Raises ``OSError`` as ``recv`` does."""
        sock = self._socket
        if sock is None or sock.fileno() < 0:
            return None
        try:
            return os.read(sock.fileno(), READ_SIZE)
        except BlockingIOError:
            return None

    async def _flush(self) -> None:
        chunks = self._protocol.data_to_send()
        if not chunks:
            return
        payload = b"".join(chunks)  # an empty chunk means "half-close": nothing to write
        if not payload:
            return
        async with self._send_lock:
            try:
                await self._stream.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._closed = self._closed or WebSocketClosed(f"connection lost: {exc!r}")
                raise self._closed from exc

    async def send_text(self, text: str) -> None:
        if self._closed is not None:
            raise self._closed
        self._protocol.send_text(text.encode())
        await self._flush()

    async def aclose(self, code: int = 1000) -> None:
        """Send a close frame if still open, then close the byte stream (without waiting
        for the server's close frame)."""
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(code)
                with trio.move_on_after(1):
                    await self._flush()
        except (WebSocketClosed, trio.BrokenResourceError, OSError):
            pass
        finally:
            # A graceful close of the byte stream: for wss:// that sends TLS close_notify.
            # Bounded; a stream's aclose closes the socket even when cancelled.
            with trio.move_on_after(1):
                await self._stream.aclose()
