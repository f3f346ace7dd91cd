"""A thin trio WebSocket client around websockets' sans-I/O ``ClientProtocol``.

Why not trio-websocket or ``websockets.trio``: both pay a scheduler pass per message, which
caps ingest at a fraction of what the socket delivers (../shared/DESIGN.md, section 2). Here
one ``receive()`` is one socket read: every complete message of that read comes back as one
list, so the caller can decode and emit the whole read as a single batch.

TLS seam: :func:`open_byte_stream` is the only place that knows about TLS. It uses
``trio.SSLStream`` today; a drain-all TLS wrapper (DESIGN 2b) can replace it there without
touching anything else, as long as it is a ``trio.abc.Stream``.
"""

from __future__ import annotations

import ssl
from typing import Final

import trio
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

READ_SIZE: Final = 65536  # 64 KiB reads measured faster than 256 KiB (DESIGN 2)
MAX_MESSAGE: Final = 16 * 1024 * 1024  # Bybit messages are far smaller; a bound, not a tuning

_default_ssl: ssl.SSLContext | None = None


class WebSocketClosed(Exception):
    """The connection is over: closed by the server, reset, or ended without a close frame."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade (HTTP status or protocol error)."""


def _default_ssl_context() -> ssl.SSLContext:
    global _default_ssl
    if _default_ssl is None:
        _default_ssl = ssl.create_default_context()
    return _default_ssl


async def open_byte_stream(
    host: str, port: int, secure: bool, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """TCP, or TLS over TCP for wss://. The seam for a faster drain-all TLS stream."""
    if not secure:
        return await trio.open_tcp_stream(host, port)
    # https_compatible=True: tolerate servers that drop TCP without close_notify.
    return await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=ssl_context or _default_ssl_context(), https_compatible=True
    )


class WebSocket:
    """One client WebSocket. One task calls :meth:`receive`; any task may :meth:`send_text`."""

    def __init__(self, stream: trio.abc.Stream, protocol: ClientProtocol) -> None:
        self._stream = stream
        self._protocol = protocol
        self._send_lock = trio.Lock()
        self._pending: list[bytes] = []  # messages read along with the handshake
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._closed: WebSocketClosed | None = None
        #: Binary data frames received and dropped (Bybit's public streams send text only).
        self.binary_frames = 0

    @classmethod
    async def connect(cls, url: str, *, ssl_context: ssl.SSLContext | None = None) -> WebSocket:
        """Open the socket and complete the opening handshake (bound it with a cancel scope)."""
        uri = parse_uri(url)
        stream = await open_byte_stream(uri.host, uri.port, uri.secure, ssl_context)
        try:
            protocol = ClientProtocol(uri, max_size=MAX_MESSAGE)
            ws = cls(stream, protocol)
            protocol.send_request(protocol.connect())
            await ws._flush()
            await ws._handshake()
            return ws
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _handshake(self) -> None:
        while True:
            data = await self._stream.receive_some(READ_SIZE)
            if data:
                self._protocol.receive_data(data)
            else:
                self._protocol.receive_eof()
            for event in self._protocol.events_received():
                if isinstance(event, Response):
                    if self._protocol.handshake_exc is not None:
                        raise HandshakeError(
                            f"upgrade refused: {self._protocol.handshake_exc}"
                        ) from self._protocol.handshake_exc
                else:
                    self._take_frame(event, self._pending)
            await self._flush()
            if self._protocol.state is State.OPEN:
                return
            if not data or self._protocol.state is State.CLOSED:
                raise HandshakeError("connection closed during the WebSocket handshake")

    def _take_frame(self, frame: object, out: list[bytes]) -> None:
        # Text payloads stay bytes: msgspec decodes bytes directly (and checks UTF-8), so a
        # str round-trip would only cost time. Bybit never sends binary data frames; they are
        # counted in ``binary_frames`` and dropped.
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
            self._closed = WebSocketClosed(
                f"server closed the connection (code {code}{', ' + reason if reason else ''})",
                code,
            )
        # PING is answered by the protocol itself (queued in data_to_send); PONG is ignored.

    async def receive(self) -> list[bytes]:
        """Wait for one socket read; return every complete message it held (maybe none).

        Each item is the UTF-8 payload of one text message, as ``bytes``. Raises
        :class:`WebSocketClosed` once the connection is over.
        """
        if self._pending:
            pending, self._pending = self._pending, []
            return pending
        if self._closed is not None:
            raise self._closed
        try:
            data = await self._stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = WebSocketClosed(f"connection lost: {exc!r}")
            raise self._closed from exc
        protocol = self._protocol
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        out: list[bytes] = []
        for event in protocol.events_received():
            self._take_frame(event, out)
        await self._flush()  # pongs to server pings, the reply to a close frame
        if not data and self._closed is None:
            self._closed = WebSocketClosed("connection closed without a close frame")
        if protocol.state is State.CLOSED and self._closed is None:
            self._closed = WebSocketClosed(f"protocol error: {protocol.close_exc}")
        if self._closed is not None and not out:
            await trio.aclose_forcefully(self._stream)
            raise self._closed
        return out

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
        """Send a close frame if still open and drop the socket (without waiting long)."""
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(code)
                with trio.move_on_after(1):
                    await self._flush()
        except (WebSocketClosed, trio.BrokenResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(self._stream)
