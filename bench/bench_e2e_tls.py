"""Prototype (bench only): a drain-all TLS client stream for trio (../shared/DESIGN.md 2b).

``trio.SSLStream.receive_some`` hands back at most one TLS record per call and passes through
the scheduler each time; with one record per WebSocket message (as real servers write them)
that is one scheduler pass per message. This stream reads the socket once (64 KiB), feeds
``ssl.MemoryBIO``, and returns *every* record decrypted from that read, so one
``receive_some`` is one socket read, as asyncio's TLS layer does.

It is a ``trio.abc.Stream`` with the signature of ``streamer_bybit.transport.open_byte_stream``
(the source's TLS seam), so the bench swaps it in with ``--tls-wrapper drainall``. One task
receives; sends are serialised by a lock (the SSL object itself is only touched between
awaits, so the two never interleave inside OpenSSL). Not hardened for production: no
renegotiation, close_notify is not sent on close (as ``https_compatible=True``).
"""

from __future__ import annotations

import ssl

import trio

READ_SIZE = 65536


class DrainAllTLSStream(trio.abc.Stream):
    def __init__(self, transport: trio.abc.Stream, context: ssl.SSLContext,
                 server_hostname: str) -> None:
        self.transport = transport
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=False,
                                     server_hostname=server_hostname)
        self._send_lock = trio.Lock()
        self._eof = False

    async def _flush(self) -> None:
        if self._out.pending:
            async with self._send_lock:
                data = self._out.read()
                if data:
                    await self.transport.send_all(data)

    async def do_handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.transport.receive_some(READ_SIZE)
                if not data:
                    raise trio.BrokenResourceError("EOF during the TLS handshake") from None
                self._in.write(data)
        await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        read = self._obj.read
        while True:
            chunks: list[bytes] = []
            try:
                while True:
                    chunk = read(READ_SIZE)
                    if not chunk:
                        self._eof = True
                        break
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self._eof = True
            if self._out.pending:  # TLS 1.3 post-handshake messages, key updates
                await self._flush()
            if chunks:
                return b"".join(chunks)
            if self._eof:
                return b""
            data = await self.transport.receive_some(READ_SIZE)
            if not data:
                return b""  # EOF without close_notify: tolerated, as https_compatible=True
            self._in.write(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self._send_lock:
            self._obj.write(data)
            out = self._out.read()
            if out:
                await self.transport.send_all(out)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.transport.aclose()


async def open_drain_all_byte_stream(
    host: str, port: int, secure: bool, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    """Drop-in for ``streamer_bybit.transport.open_byte_stream``."""
    tcp = await trio.open_tcp_stream(host, port)
    if not secure:
        return tcp
    stream = DrainAllTLSStream(tcp, ssl_context or ssl.create_default_context(), host)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream
