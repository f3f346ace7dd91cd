"""A Redis pipeline written on trio's own sockets, for plain TCP and unix-socket servers.

The writer's flush through redis-py's sync client costs a worker-thread hop: the thread's
wake-up, then a second wake-up of the trio thread when the result comes back, on top of the
flush window's timer (docs/performance.md). On trio's sockets a flush is one ``send`` from
the task that decided to flush and one wake-up when the replies arrive (measured on the
2-core VM, 10 ms apart, six PUBLISH of 2 kB: ~150 us of CPU per flush over the timer alone,
against ~410-540 us through the thread).

Only what the sinks need: commands are taken from a redis-py ``Pipeline``'s command stack
(the sinks keep building with redis-py's command methods), packed as RESP arrays and sent at
once; the replies are parsed as RESP2, and a reply error becomes the same
``redis.ResponseError`` redis-py returns, so the writer's classification (transient, fatal
credentials, refused) is unchanged. Connection options (host, port or unix path, db,
username, password, timeouts) are the ones redis-py parsed from the sink's config. TLS
(``rediss://``) stays on redis-py (:func:`supports`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
import redis.client
import redis.connection
import trio

#: redis-py connection classes whose options this module speaks for (exact types: a subclass,
#: e.g. TLS, has options we do not implement).
_PLAIN = (redis.connection.Connection, redis.connection.UnixDomainSocketConnection)


def supports(client: redis.Redis) -> bool:
    """Whether ``client``'s connections are plain TCP or a unix socket."""
    return client.connection_pool.connection_class in _PLAIN


def _encode(value: Any) -> bytes:
    # The same conversions as redis-py's Encoder (without decode_responses): bytes as they
    # are, str as UTF-8, numbers by repr.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    if isinstance(value, memoryview):
        return value.tobytes()
    raise redis.DataError(
        f"Invalid input of type: {type(value).__name__!r}. Convert to a bytes, string, int or "
        "float first."
    )


def pack(commands: Iterable[Sequence[Any]]) -> bytes:
    """The RESP encoding of ``commands``, one buffer."""
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            data = _encode(arg)
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


#: Bytes of replies held at most while a pipeline's answers come in. The sinks' commands
#: answer with a status, an integer or an entry id (~25 bytes); a pipeline of ``MAX_CHUNK``
#: events stays far below this. A server that sends more is not one to trust with the rest.
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: Arrays nested deeper than this are refused (the sinks' replies nest at most once).
MAX_REPLY_DEPTH = 8


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int, depth: int = 0) -> tuple[Any, int]:
    """One RESP2 reply from ``buf[pos:]``: (reply, position after it); raises _Incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buf[pos]
    line = bytes(buf[pos + 1:end])
    pos = end + 2
    if kind in (58, 36, 42) and not (line.lstrip(b"-").isdigit() and len(line) < 20):
        raise redis.InvalidResponse(f"Protocol error, bad length or integer {line[:40]!r}")
    if kind == 43:  # +
        return line, pos
    if kind == 45:  # -
        return redis.ResponseError(line.decode(errors="replace")), pos
    if kind == 58:  # :
        return int(line), pos
    if kind == 36:  # $
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + size]), pos + size + 2
    if kind == 42:  # *
        count = int(line)
        if count < 0:
            return None, pos
        if depth >= MAX_REPLY_DEPTH:
            raise redis.InvalidResponse(f"Protocol error, arrays nested over {MAX_REPLY_DEPTH}")
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos, depth + 1)
            items.append(item)
        return items, pos
    raise redis.InvalidResponse(f"Protocol error, got {chr(kind)!r} as reply type byte")


class TrioConnection:
    """One connection to Redis; :meth:`execute` sends a pipeline and returns its replies.

    Any failure closes it (the replies of a half-read pipeline would answer the next one);
    the next :meth:`execute` connects again. Errors are redis-py's: ``ConnectionError``,
    ``TimeoutError``, ``AuthenticationError``.
    """

    def __init__(self, client: redis.Redis) -> None:
        options = client.connection_pool.connection_kwargs
        self._unix_path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port: int = int(options.get("port", 6379))
        self._db = int(options.get("db") or 0)
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._timeout = float(options.get("socket_timeout") or 5.0)
        self._connect_timeout = float(options.get("socket_connect_timeout") or self._timeout)
        self._stream: trio.abc.Stream | None = None
        self._buffer = bytearray()

    async def _connect(self) -> trio.abc.Stream:
        try:
            with trio.fail_after(self._connect_timeout):
                if self._unix_path is not None:
                    stream: trio.abc.Stream = await trio.open_unix_socket(self._unix_path)
                else:
                    tcp = await trio.open_tcp_stream(self._host, self._port)
                    # As redis-py's socket_keepalive (on by default): a peer that vanished
                    # without a FIN is noticed on an idle connection too.
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    stream = tcp
        except trio.TooSlowError:
            raise redis.TimeoutError("Timeout connecting to server") from None
        except OSError as exc:
            raise redis.ConnectionError(f"Error connecting to {self._where()}: {exc}") from exc
        self._stream = stream
        self._buffer.clear()
        hello: list[list[Any]] = []
        if self._password is not None:
            hello.append(["AUTH", self._username, self._password] if self._username
                         else ["AUTH", self._password])
        if self._db:
            hello.append(["SELECT", self._db])
        if hello:
            replies = await self._round_trip(hello)
            for reply in replies:
                if isinstance(reply, redis.ResponseError):
                    self.close()
                    if str(reply).startswith(("WRONGPASS", "NOAUTH", "ERR invalid password",
                                              "ERR AUTH")):
                        raise redis.AuthenticationError(str(reply))
                    raise reply
        return stream

    def _where(self) -> str:
        return self._unix_path or f"{self._host}:{self._port}"

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` as one write, return one reply per command (errors as
        ``ResponseError`` values). Bounded by ``socket_timeout``. A cancel closes the
        connection (the replies of a half-sent pipeline must not answer the next one); the
        writer shields its writes up to its shutdown deadline."""
        payload = pack(commands)
        if self._stream is None:
            await self._connect()
        return await self._round_trip(commands, payload)

    async def send(self, commands: Sequence[Sequence[Any]]) -> None:
        """Send ``commands`` as one write without waiting for their replies: the caller
        takes them later with :meth:`receive` (one pipeline in flight at a time). Connects
        first if needed. The write itself is bounded by ``socket_timeout``; into an empty
        socket buffer it is one ``send`` and no scheduler pass (the caller has just passed
        a checkpoint)."""
        payload = pack(commands)
        if self._stream is None:
            await self._connect()
        with self._failures():
            with trio.fail_after(self._timeout):
                await self._send(payload)

    async def receive(self, count: int, deadline: float) -> list[Any]:
        """The replies of the ``count`` commands sent last, by trio time ``deadline`` (else
        ``redis.TimeoutError``). Replies already in the socket are read without waiting."""
        with self._failures():
            with trio.fail_at(deadline):
                return await self._receive(count)

    async def _round_trip(self, commands: Sequence[Sequence[Any]],
                          payload: bytes | None = None) -> list[Any]:
        if payload is None:
            payload = pack(commands)
        with self._failures():
            with trio.fail_after(self._timeout):
                await self._send(payload)
                return await self._receive(len(commands))

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Any failure closes the connection, as redis-py's errors."""
        try:
            yield
        except trio.TooSlowError:
            self.close()
            raise redis.TimeoutError("Timeout reading from socket") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close()
            raise redis.ConnectionError(f"Error writing to {self._where()}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    async def _send(self, payload: bytes) -> None:
        stream = self._stream
        if stream is None:
            raise redis.ConnectionError(f"Connection to {self._where()} closed")
        fd = _fd_of(stream)
        sent = 0
        if fd >= 0:
            try:
                sent = os.write(fd, payload)
            except BlockingIOError:
                sent = 0
            if sent == len(payload):
                return
        await stream.send_all(memoryview(payload)[sent:])

    async def _receive(self, count: int) -> list[Any]:
        stream = self._stream
        if stream is None:
            raise redis.ConnectionError(f"Connection to {self._where()} closed")
        buf = self._buffer
        replies: list[Any] = []
        pos = 0
        fd = _fd_of(stream)
        while len(replies) < count:
            try:
                while len(replies) < count:
                    reply, pos = _parse(buf, pos)
                    replies.append(reply)
                break
            except _Incomplete:
                pass
            if len(buf) - pos > MAX_REPLY_BYTES:
                raise redis.ConnectionError(
                    f"{self._where()} answered with more than {MAX_REPLY_BYTES} bytes "
                    f"for {count} commands; closed")
            data: bytes | bytearray | None = None
            if fd >= 0:  # replies that came while nobody waited: no wake-up to read them
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    fd = -1  # nothing yet: wait for them as usual from now on
            if data is None:
                data = await stream.receive_some(65536)
            if not data:
                raise redis.ConnectionError(f"Connection closed by server ({self._where()})")
            buf += data
        del buf[:pos]
        return replies

    def close(self) -> None:
        stream, self._stream = self._stream, None
        self._buffer.clear()
        if stream is not None:
            # SocketStream/close is synchronous underneath; aclose() would checkpoint.
            trio_socket = getattr(stream, "socket", None)
            if trio_socket is not None:
                trio_socket.close()


def _fd_of(stream: trio.abc.Stream) -> int:
    """The descriptor of a plain socket stream (TCP or unix), else -1."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.fileno()
    return -1


def commands_of(pipe: redis.client.Pipeline) -> list[Sequence[Any]]:
    """The commands a sink's builder queued on ``pipe``."""
    return [args for args, _ in pipe.command_stack]
