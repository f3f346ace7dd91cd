"""Network clients for plugins: a WebSocket client, a drain-all TLS stream, a JSON GET client.

Public (docs/writing_plugins.md, "streamer.net"). Nothing here knows an exchange: URLs,
subscriptions, application-level pings and field names stay in the plugin that uses them.

Importing this module imports ``websockets``; ``import streamer`` does not, so a plugin
imports ``streamer.net`` where its node is built or run, not where it registers.

- :class:`WebSocket` (``connect``, ``receive``, ``send_text``, ``aclose``): one socket read
  per ``receive()``, every complete text message of that read in one list (``bytes``),
  messages up to :data:`MAX_MESSAGE`; raises :class:`WebSocketClosed` /
  :class:`HandshakeError`.
- :class:`TLSStream` / :func:`open_tls_over_tcp_stream`: a client ``trio.abc.Stream`` that
  returns everything one socket read decrypts to (``trio.SSLStream`` returns one record).
- :func:`get_json` / :class:`HttpError`: ``GET`` a JSON document over http:// or https://,
  bounded in bytes (:data:`MAX_BODY`) and time.
- :func:`default_ssl_context`: the process-wide client context over the system trust store.
- :class:`WakeTimer`: a reusable timer one task sleeps on (a read-coalescing wait), woken
  through epoll by a Linux timerfd rather than by a cancel-scope deadline; ``trio.sleep``
  under any clock but trio's own.
"""

from __future__ import annotations

from streamer.net._http import MAX_BODY, HttpError, default_ssl_context, get_json
from streamer.net._tls import TLSStream, open_tls_over_tcp_stream
from streamer.net._wake_timer import WakeTimer
from streamer.net._websocket import (
    MAX_MESSAGE,
    READ_SIZE,
    HandshakeError,
    WebSocket,
    WebSocketClosed,
)

__all__ = [
    "MAX_BODY",
    "MAX_MESSAGE",
    "READ_SIZE",
    "HandshakeError",
    "HttpError",
    "TLSStream",
    "WakeTimer",
    "WebSocket",
    "WebSocketClosed",
    "default_ssl_context",
    "get_json",
    "open_tls_over_tcp_stream",
]
