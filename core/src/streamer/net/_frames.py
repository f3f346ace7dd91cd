"""Sans-I/O frame slicing for :class:`~streamer.net.WebSocket`: bytes read after the opening
handshake in, complete text messages out (:class:`MessageReader`).

Market-data servers send their data as complete, unmasked FIN text frames; those are sliced
out of the read by hand (websockets' generator-based parser cost ~31% of the CPU flat out,
docs/performance.md). Every other frame goes to websockets' ``ClientProtocol`` whole.
"""

from __future__ import annotations

from typing import Final

from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State

MAX_MESSAGE: Final = 16 * 1024 * 1024  # market-data messages are far smaller: a bound, not a tuning

_FIN_TEXT: Final = 0x81  # FIN set, RSV1-3 clear, opcode 0x1 (text)


class WebSocketClosed(Exception):
    """The connection is over: closed by the server, reset, or ended without a close frame."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


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
        #: Bytes (or the EOF) went to the protocol since the caller last cleared this: it
        #: may have something to send (a pong, a close) or have changed state.
        self.fed_protocol = False

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
        self.fed_protocol = True
        leftover = b"".join(self._partial) + self._head
        self._partial, self._head = [], b""
        if leftover:
            self._to_protocol(leftover, out)
        self.protocol.receive_eof()
        self._drain_events(out)
        return out

    def _to_protocol(self, data: bytes, out: list[bytes]) -> None:
        self.fed_protocol = True
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


__all__ = ["MAX_MESSAGE", "MessageReader", "WebSocketClosed"]
