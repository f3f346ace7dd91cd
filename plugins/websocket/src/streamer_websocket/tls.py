"""TLS for the sink's server side (wss://): the context built from tls_certfile/tls_keyfile."""

from __future__ import annotations

import ssl

from streamer import FatalError
from streamer_websocket.config import WebSocketConfig


def server_ssl_context(config: WebSocketConfig, sink_name: str) -> ssl.SSLContext | None:
    """The TLS context for wss://, or None for plain ws://; FatalError on unusable files."""
    if config.tls_certfile is None or config.tls_keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_certfile, config.tls_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(
            f"websocket sink {sink_name!r}: cannot load tls_certfile {config.tls_certfile!r} "
            f"/ tls_keyfile {config.tls_keyfile!r}: {exc}"
        ) from exc
    return context
