"""Ready-made WebSocket frames, written to a connection as they are.

A server's frames are not masked (RFC 6455 section 5.1) and the sink accepts no extension
(trio-websocket accepts none: no ``permessage-deflate``), so the bytes of a text frame depend
on its text only: frames built once can go to every client that is due the same text, and
several frames to one client go in one write (one system call instead of one per message).

:func:`send_frames` writes through the connection's own send lock and stream, as
trio-websocket's ``send_message`` does after wsproto has framed the message: the same lock
keeps the bytes apart from the pings, pongs and close frames trio-websocket sends itself.
Those are trio-websocket internals (``_stream_lock``, ``_stream``, ``_abort_web_socket``),
hence the upper bound on its version in the plugin's requirements. :func:`write_nowait`
writes at once, from the tick, when nothing else is being sent (the lock is free, no
backlog); :func:`send_frames` waits its turn;
``tests/websocket/test_batch.py`` reads the frames with two other clients' parsers.
"""

from __future__ import annotations

import struct

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from streamer_websocket.front import ReplayStream

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame holding ``payload`` (UTF-8 text)."""
    size = len(payload)
    if size < 126:
        head = bytes((_FIN_TEXT, size))
    elif size < 65536:
        head = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        head = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return head + payload


def text_frames(texts: list[str]) -> bytes:
    return b"".join(text_frame(text.encode()) for text in texts)


def write_nowait(ws: WebSocketConnection, data: bytes) -> bool:
    """Write whole frames to ``ws`` at once if nothing else is being sent to it (plain TCP
    only: :meth:`ReplayStream.write_nowait`); False: send them with :func:`send_frames`."""
    stream = ws._stream
    return (isinstance(stream, ReplayStream) and ws.closed is None
            and not ws._stream_lock.locked() and stream.write_nowait(data))


def backlogged(ws: WebSocketConnection) -> bool:
    """Whether part of a :func:`write_nowait` is still to be sent (by :func:`send_frames`)."""
    stream = ws._stream
    return isinstance(stream, ReplayStream) and stream.backlogged


async def send_frames(ws: WebSocketConnection, data: bytes) -> None:
    """Write whole frames to ``ws`` (after its backlog); raises ConnectionClosed as
    ``send_message`` does."""
    reason = ws.closed
    if reason is not None:
        raise ConnectionClosed(reason)
    lock = ws._stream_lock
    try:
        lock.acquire_nowait()  # free nearly always: no scheduler pass to take it
    except trio.WouldBlock:
        await lock.acquire()
    try:
        await ws._stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await ws._abort_web_socket()
        raise ConnectionClosed(ws.closed) from None
    finally:
        lock.release()
