"""TLS for the fake: a self-signed certificate helper and a server-side TLS transport.

The transport drives ``ssl.SSLObject`` over memory BIOs itself instead of using
``trio.SSLStream`` so that it can write *one TLS record per WebSocket message* (as real
servers do) while still handing a whole batch of records to the socket in one
``send_all`` -- otherwise the fake, not the client under test, would be the bottleneck.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile

import trio


def make_self_signed(directory: str | None = None) -> tuple[str, str]:
    """Write a self-signed cert for ``localhost`` / ``127.0.0.1``; return (certfile, keyfile).

    Uses the ``openssl`` CLI (the ``cryptography`` package is not installed here)."""
    directory = directory or tempfile.mkdtemp(prefix="bybit-simulator-tls-")
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def make_ssl_contexts(directory: str | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """(server_context, client_context trusting it, path of the CA/cert file)."""
    cert, key = make_self_signed(directory)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=cert)
    return server, client, cert


class TLSServerStream:
    """Minimal server-side TLS over a trio stream. One task receives, one task sends."""

    def __init__(self, transport: trio.abc.Stream, context: ssl.SSLContext) -> None:
        self.transport = transport
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=True)
        self._eof = False

    async def handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = self._out.read()
                if pending:
                    await self.transport.send_all(pending)
                data = await self.transport.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("EOF during TLS handshake") from None
                self._in.write(data)
        pending = self._out.read()
        if pending:
            await self.transport.send_all(pending)

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Every decrypted byte available after (at most) one socket read."""
        while True:
            chunks = []
            try:
                while True:
                    chunk = self._obj.read(max_bytes)
                    if not chunk:
                        self._eof = True
                        break
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                self._eof = True
            if chunks:
                return b"".join(chunks)
            if self._eof:
                return b""
            data = await self.transport.receive_some(65536)
            if not data:
                return b""
            self._in.write(data)

    def has_pending(self) -> bool:
        """Whether the SSL object produced bytes to send (left for the sender task)."""
        return self._out.pending > 0

    async def send_all(self, data: bytes) -> None:
        self._obj.write(data)
        await self.transport.send_all(self._out.read())

    async def send_records(self, frames: list[bytes]) -> None:
        """One TLS record per frame (frames > 16 KiB split as TLS must), one socket write."""
        write = self._obj.write
        for f in frames:
            write(f)
        data = self._out.read()
        if data:
            await self.transport.send_all(data)

    async def aclose(self) -> None:
        await self.transport.aclose()
