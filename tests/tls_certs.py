"""A self-signed certificate for TLS tests of plugins other than Bybit (Redis, WebSocket).

The Bybit simulator has the same helper (``streamer_bybit.simulator.make_self_signed``) for
its ``--tls``; these suites cannot import it, since scripts/check-packaging runs each
plugin's tests with only that plugin installed.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile


def make_self_signed(directory: str | None = None) -> tuple[str, str]:
    """Write a self-signed cert for ``localhost`` / ``127.0.0.1``; return (certfile, keyfile).

    Uses the ``openssl`` CLI (the ``cryptography`` package is not installed here)."""
    directory = directory or tempfile.mkdtemp(prefix="streamer-test-tls-")
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
    """(server_context, client_context trusting it, path of the certificate file)."""
    cert, key = make_self_signed(directory)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=cert), cert
