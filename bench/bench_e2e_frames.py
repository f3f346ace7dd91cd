"""Prototype (bench only): a fast path for complete, unfragmented text frames in the source's
WebSocket transport.

Flat out, about a third of the streamer's CPU goes to websockets' generator-based frame
parser (``Protocol.parse`` -> ``Frame.parse`` -> ``StreamReader.read_exact``), one
generator round trip per frame. Bybit's data frames are all FIN text frames, unmasked, no
extension, so while the connection is OPEN and the protocol's parser sits at a frame
boundary (empty reader buffer, no fragmented message in progress) they can be sliced out of
the read by hand. The first frame that is anything else (ping, close, continuation, binary,
RSV bits, oversize) and everything after it in that read go to the protocol as before; the
fast path resumes once the protocol's buffer is empty again. A partial fast frame at the
end of a read is kept for the next read.

``install()`` replaces ``streamer_bybit.transport.WebSocket.receive``; the bench uses it
with ``--proto-frames fast`` to measure the gain. Not a drop-in for production as it stands:
it relies on ``protocol.reader.buffer`` and ``protocol.current_size`` (websockets internals,
17.x), which a real change would pin or replace with its own frame reader.
"""

from __future__ import annotations

from typing import Any

import trio
from websockets.protocol import State

MAX_FAST = 16 * 1024 * 1024


def _split_fast(buf: bytes) -> tuple[list[bytes], int, bool]:
    """(complete fast frames, bytes consumed, stopped at a frame the fast path cannot take)."""
    out: list[bytes] = []
    pos = 0
    n = len(buf)
    while n - pos >= 2:
        if buf[pos] != 0x81:  # FIN + TEXT, no RSV bits
            return out, pos, True
        length = buf[pos + 1]
        if length & 0x80:  # masked: a server must not
            return out, pos, True
        if length < 126:
            head = 2
        elif length == 126:
            if n - pos < 4:
                break
            length = int.from_bytes(buf[pos + 2:pos + 4], "big")
            head = 4
        else:
            if n - pos < 10:
                break
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            head = 10
            if length > MAX_FAST:
                return out, pos, True
        end = pos + head + length
        if end > n:
            break
        out.append(buf[pos + head:end])
        pos = end
    return out, pos, False


async def receive(self: Any) -> list[bytes]:
    from streamer_bybit.transport import READ_SIZE, WebSocketClosed

    if self._pending:
        pending: list[bytes] = self._pending
        self._pending = []
        return pending
    if self._closed is not None:
        raise self._closed
    try:
        data = await self._stream.receive_some(READ_SIZE)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        self._closed = WebSocketClosed(f"connection lost: {exc!r}")
        raise self._closed from exc
    protocol = self._protocol
    carry: bytes = getattr(self, "_fast_carry", b"")
    out: list[bytes] = []
    if (data and protocol.state is State.OPEN and not protocol.reader.buffer
            and protocol.current_size is None):
        buf = carry + data if carry else data
        out, used, stopped = _split_fast(buf)
        if stopped:
            self._fast_carry = b""
            protocol.receive_data(buf[used:])
        else:
            self._fast_carry = buf[used:]
            return out
    else:
        if carry:
            self._fast_carry = b""
            protocol.receive_data(carry)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
    for event in protocol.events_received():
        self._take_frame(event, out)
    await self._flush()
    if not data and self._closed is None:
        self._closed = WebSocketClosed("connection closed without a close frame")
    if protocol.state is State.CLOSED and self._closed is None:
        self._closed = WebSocketClosed(f"protocol error: {protocol.close_exc}")
    if self._closed is not None and not out:
        await trio.aclose_forcefully(self._stream)
        raise self._closed
    return out


def install() -> None:
    import streamer_bybit.transport as transport

    transport.WebSocket.receive = receive
