"""A drain-all TLS client stream for trio.

Why not ``trio.SSLStream``: its ``receive_some`` hands back at most one TLS record per call
and passes through the scheduler each time. Servers write one record per WebSocket message,
so the source paid a scheduler pass per message and reached only 0.32x of ws:// throughput
(docs/performance.md, item 6). This stream reads the socket once, feeds ``ssl.MemoryBIO``
and returns every byte decrypted from that read, so one ``receive_some`` is one socket read,
as asyncio's TLS layer does.

``max_bytes`` is honoured as ``trio.abc.Stream`` defines it: a call returns at most that
many bytes, and what was decrypted beyond it stays inside OpenSSL for the next call (which
then returns without a socket read). The WebSocket client asks for 64 KiB, more than one
64 KiB socket read decrypts to in all but rare cases, so its fast path is unchanged.

Concurrency: one task receives, any task sends. The ``ssl.SSLObject`` is only touched
synchronously between awaits, so calls never interleave inside OpenSSL; bytes leave the
outgoing BIO only under the send lock, read and written in one go, so the socket sees them
in the order OpenSSL produced them (post-handshake replies from the receiving side
included).

Failures follow ``trio.abc.Stream``: a broken peer (TLS alert, garbage, EOF without
close_notify, a reset socket) raises ``trio.BrokenResourceError`` chained to the cause; a
clean close_notify from the peer reads as EOF (``b""``).
"""

from __future__ import annotations

import ssl
from typing import Final

import trio

READ_SIZE: Final = 65536  # one socket read; 64 KiB measured best
CLOSE_NOTIFY_TIMEOUT: Final = 1.0  # aclose waits this long at most to send close_notify


class TLSStream(trio.abc.Stream):
    """Client-side TLS over ``transport_stream``. Call :meth:`do_handshake` before use."""

    def __init__(
        self,
        transport_stream: trio.abc.Stream,
        ssl_context: ssl.SSLContext,
        server_hostname: str,
    ) -> None:
        self.transport_stream = transport_stream
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # server_hostname gives SNI, and hostname verification when the context checks it
        # (ssl.create_default_context does).
        self.ssl_object = ssl_context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self._send_lock = trio.Lock()
        self._receiving = False
        self._handshake_done = False
        self._peer_closed = False  # close_notify received
        self._broken: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------ internals
    def _fail(self, what: str, cause: BaseException | None = None) -> trio.BrokenResourceError:
        error = trio.BrokenResourceError(f"TLS {what}" + (f": {cause!r}" if cause else ""))
        error.__cause__ = cause
        self._broken = error
        return error

    def _check_usable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError(str(self._broken)) from self._broken.__cause__

    async def _send_outgoing(self) -> None:
        """Write whatever OpenSSL queued (handshake, alerts, post-handshake replies)."""
        if not self._outgoing.pending:
            return
        async with self._send_lock:
            data = self._outgoing.read()
            if data:
                try:
                    await self.transport_stream.send_all(data)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise self._fail("send failed", exc) from exc

    async def _read_transport(self) -> bytes:
        try:
            # bytes(b) is b itself for bytes (what sockets return): no copy, just the type.
            return bytes(await self.transport_stream.receive_some(READ_SIZE))
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._fail("receive failed", exc) from exc

    # ------------------------------------------------------------------ handshake
    async def do_handshake(self) -> None:
        """Complete the handshake (certificate and hostname checked by the context).

        Raises ``trio.BrokenResourceError`` chained to the ``ssl.SSLError`` (for example
        ``SSLCertVerificationError``) or to the EOF that ended it.
        """
        self._check_usable()
        while True:
            try:
                self.ssl_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                await self._send_alert()
                raise self._fail("handshake failed", exc) from exc
            await self._send_outgoing()
            data = await self._read_transport()
            if not data:
                raise self._fail("handshake failed: the peer closed the connection")
            self._incoming.write(data)
        self._handshake_done = True
        await self._send_outgoing()

    async def _send_alert(self) -> None:
        # Best effort: tell the peer why (a failed certificate check queues an alert).
        with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT):
            try:
                await self._send_outgoing()
            except trio.BrokenResourceError:
                pass

    # ------------------------------------------------------------------ trio.abc.Stream
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Every byte decrypted from (at most) one socket read, up to ``max_bytes`` (None: no
        limit); ``b""`` after close_notify. Bytes beyond ``max_bytes`` come with the next call.
        """
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving")
        self._check_usable()
        if not self._handshake_done:
            raise RuntimeError("receive_some before do_handshake")
        self._receiving = True
        try:
            return await self._receive(max_bytes)
        finally:
            self._receiving = False

    async def _receive(self, max_bytes: int | None) -> bytes:
        read = self.ssl_object.read
        socket_read = False
        while True:
            chunks: list[bytes] = []
            left = READ_SIZE if max_bytes is None else max_bytes
            if not self._peer_closed:
                try:
                    while left > 0:
                        chunk = read(min(left, READ_SIZE))
                        if not chunk:  # (ragged EOFs raise below; this is close_notify)
                            self._peer_closed = True
                            break
                        chunks.append(chunk)
                        if max_bytes is not None:
                            left -= len(chunk)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLZeroReturnError:
                    self._peer_closed = True
                except ssl.SSLError as exc:  # garbage, a bad MAC, a fatal alert from the peer
                    error = self._fail("protocol error from the peer", exc)
                    if not chunks:
                        raise error from exc
                    # Deliver what was decrypted before the bad record; the next call raises.
                    await self._checkpoint_unless(socket_read)
                    return b"".join(chunks)
            # TLS 1.3 session tickets are consumed by read(); a key update queues a reply.
            await self._send_outgoing()
            if chunks or self._peer_closed:
                # Left over from an earlier read (max_bytes cut it, or close_notify came with
                # data): still a checkpoint, as every trio stream call is.
                await self._checkpoint_unless(socket_read)
                return b"".join(chunks)
            data = await self._read_transport()
            socket_read = True
            if not data:
                # EOF without close_notify: the peer or a middlebox cut the connection, and
                # any record it was sending is lost. Not a clean end of stream.
                raise self._fail("connection closed without close_notify")
            self._incoming.write(data)

    @staticmethod
    async def _checkpoint_unless(done: bool) -> None:
        if not done:
            await trio.lowlevel.checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_usable()
        if not self._handshake_done:
            raise RuntimeError("send_all before do_handshake")
        async with self._send_lock:
            if self._closed:
                raise trio.ClosedResourceError("the TLS stream is closed")
            try:
                self.ssl_object.write(data)
            except ssl.SSLError as exc:
                raise self._fail("send failed", exc) from exc
            out = self._outgoing.read()
            if out:
                try:
                    await self.transport_stream.send_all(out)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise self._fail("send failed", exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Send close_notify (without waiting for the peer's), then close the socket.

        Bounded by ``CLOSE_NOTIFY_TIMEOUT``; the socket is closed even if cancelled.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._handshake_done and self._broken is None:
                with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT):
                    try:
                        self.ssl_object.unwrap()
                    except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                        pass  # close_notify queued; the peer's reply is not awaited
                    except ssl.SSLError:
                        pass
                    try:
                        async with self._send_lock:
                            data = self._outgoing.read()
                            if data:
                                await self.transport_stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
        finally:
            await self.transport_stream.aclose()


async def open_tls_over_tcp_stream(
    host: str, port: int, ssl_context: ssl.SSLContext
) -> TLSStream:
    """TCP connect, then the TLS handshake with SNI and hostname verification for ``host``."""
    tcp = await trio.open_tcp_stream(host, port)
    stream = TLSStream(tcp, ssl_context, server_hostname=host)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream
