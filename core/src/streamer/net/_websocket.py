"""A thin trio WebSocket client around websockets' sans-I/O ``ClientProtocol``.

Why not trio-websocket or ``websockets.trio``: both pay a scheduler pass per message, which
caps ingest at a fraction of what the socket delivers (docs/background.md, "Ingest"). Here
one ``receive()`` is one socket read: every complete message of that read comes back as one
list, so the caller can decode and emit the whole read as a single batch.

Frames: market-data servers (Bybit's among them) send their data as complete, unmasked FIN
text frames. After the opening handshake :class:`MessageReader` parses frame headers itself
and slices those payloads out of the read directly; websockets' generator-based parser cost
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
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from streamer.net._http import default_ssl_context
from streamer.net._tls import open_tls_over_tcp_stream

READ_SIZE: Final = 65536  # 64 KiB reads measured faster than 256 KiB (docs/background.md)
MAX_MESSAGE: Final = 16 * 1024 * 1024  # market-data messages are far smaller: a bound, not a tuning

_FIN_TEXT: Final = 0x81  # FIN set, RSV1-3 clear, opcode 0x1 (text)
_HTTP_HEAD_END: Final = b"\r\n\r\n"

class WebSocketClosed(Exception):
    """The connection is over: closed by the server, reset, or ended without a close frame."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


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


class MessageReader:
    """Sans-I/O: bytes read after the opening handshake in, complete text messages out.

    Frames that are FIN, text, unmasked, without RSV bits and within ``max_size`` are
    sliced out by hand, while the protocol is OPEN and no fragmented message is in
    progress. Any other frame is handed to ``protocol.receive_data`` as bytes up to that
    frame's end (known from its header), so websockets parses it, answers pings, runs the
    closing handshake or fails the connection exactly as if it had read everything; the
    fast path resumes after it. Once the protocol leaves OPEN every further byte goes to it.
    Bytes of an incomplete frame stay with whichever side owns that frame.
    """

    def __init__(self, protocol: ClientProtocol, max_size: int = MAX_MESSAGE) -> None:
        self.protocol = protocol
        self.max_size = max_size
        #: Set once a close frame arrived (the caller raises it after the read's messages).
        self.closed: WebSocketClosed | None = None
        #: Binary data frames received and dropped (the client delivers text messages only).
        self.binary_frames = 0
        # Fast path off for extensions (permessage-deflate sets RSV1 on data frames).
        self._passthrough = bool(protocol.extensions)
        self._head = b""  # an incomplete frame header, not yet assigned to a side
        self._partial: list[bytes] = []  # an incomplete fast frame, header included
        self._partial_need = 0  # bytes still missing from it
        self._partial_head = 0  # its header length
        self._owed = 0  # bytes of the protocol's current frame not yet handed to it
        self._in_fragments = False  # a fragmented message is in progress (protocol's)
        self._fragments: list[bytes] = []
        self._fragment_text = False

    def receive_data(self, data: bytes) -> list[bytes]:
        """Feed one read; return the payloads of the text messages it completed, in order."""
        out: list[bytes] = []
        if self._passthrough:
            self._to_protocol(data, out)
            return out
        if self._partial:
            need = self._partial_need
            if len(data) < need:
                self._partial.append(data)
                self._partial_need = need - len(data)
                return out
            self._partial.append(data[:need])
            frame = b"".join(self._partial)
            self._partial = []
            out.append(frame[self._partial_head :])
            data = data[need:]
        elif self._owed:
            take = min(self._owed, len(data))
            self._to_protocol(data[:take], out)
            self._owed -= take
            data = data[take:]
            if self._passthrough:
                self._to_protocol(data, out)
                return out
        if self._head:
            data = self._head + data
            self._head = b""
        self._split(data, out)
        return out

    def _split(self, buf: bytes, out: list[bytes]) -> None:
        n = len(buf)
        pos = 0
        append = out.append
        max_size = self.max_size
        # Market-data frames are mostly unmasked FIN text frames of 126-65535 bytes (16-bit length):
        # checked first, in the fewest steps; everything else takes the general parse below.
        medium_ok = max_size >= 0xFFFF
        medium = medium_ok and not self._in_fragments
        while pos < n:
            if medium and buf[pos] == _FIN_TEXT and n - pos >= 4 and buf[pos + 1] == 126:
                end = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
                if end <= n:
                    append(buf[pos + 4 : end])
                    pos = end
                    continue
            if n - pos < 2:
                self._head = buf[pos:]
                return
            first = buf[pos]
            second = buf[pos + 1]
            length = second & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    self._head = buf[pos:]
                    return
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    self._head = buf[pos:]
                    return
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if second & 0x80:
                head += 4  # a masking key (a protocol error from a server: websockets says so)
            end = pos + head + length
            if first == _FIN_TEXT and not second & 0x80 and length <= max_size and not (
                self._in_fragments
            ):
                if end <= n:
                    append(buf[pos + head : end])
                    pos = end
                    continue
                self._partial = [buf[pos:]]
                self._partial_need = end - n
                self._partial_head = head
                return
            # Anything else is websockets' to parse: give it exactly this frame.
            opcode = first & 0x0F
            if opcode == 0x1 or opcode == 0x2:
                self._in_fragments = not first & 0x80
            elif opcode == 0x0 and first & 0x80:
                self._in_fragments = False
            stop = end if end < n else n
            self._to_protocol(buf[pos:stop], out)
            if self._passthrough:
                self._to_protocol(buf[stop:], out)
                return
            self._owed = end - stop
            pos = stop
            medium = medium_ok and not self._in_fragments

    def receive_eof(self) -> list[bytes]:
        """The peer closed the socket: hand websockets any incomplete frame, then EOF."""
        out: list[bytes] = []
        leftover = b"".join(self._partial) + self._head
        self._partial, self._head = [], b""
        if leftover:
            self._to_protocol(leftover, out)
        self.protocol.receive_eof()
        self._drain_events(out)
        return out

    def _to_protocol(self, data: bytes, out: list[bytes]) -> None:
        if data:
            self.protocol.receive_data(data)
            self._drain_events(out)
        if self.protocol.state is not State.OPEN:
            self._passthrough = True  # closing or failed: websockets discards the rest

    def _drain_events(self, out: list[bytes]) -> None:
        for event in self.protocol.events_received():
            self.take_frame(event, out)

    def take_frame(self, frame: object, out: list[bytes]) -> None:
        """Collect one frame parsed by websockets (handshake leftovers use this too)."""
        # Text payloads stay bytes: msgspec decodes bytes directly (and checks UTF-8), so a
        # str round-trip would only cost time. Binary data frames are counted in
        # ``binary_frames`` and dropped.
        if not isinstance(frame, Frame):
            return
        opcode = frame.opcode
        if opcode is Opcode.TEXT:
            if frame.fin:
                out.append(bytes(frame.data))  # already bytes: no copy
            else:
                self._fragment_text = True
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.BINARY:
            if frame.fin:
                self.binary_frames += 1
            else:
                self._fragment_text = False
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                if self._fragment_text:
                    out.append(data)
                else:
                    self.binary_frames += 1
        elif opcode is Opcode.CLOSE:
            try:
                close = Close.parse(frame.data)
                code: int | None = close.code
                reason = close.reason
            except Exception:  # a malformed close frame still ends the connection
                code, reason = None, ""
            self.closed = WebSocketClosed(
                f"server closed the connection (code {code}{', ' + reason if reason else ''})",
                code,
            )
        # PING is answered by the protocol itself (queued in data_to_send); PONG is ignored.


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
            if data is None:
                data = bytes(await self._stream.receive_some(READ_SIZE))  # no copy for bytes
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = WebSocketClosed(f"connection lost: {exc!r}")
            raise self._closed from exc
        self.last_read_size = len(data)
        reader = self._reader
        out = reader.receive_data(data) if data else reader.receive_eof()
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
