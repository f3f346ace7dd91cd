"""Options of the ``websocket`` sink (the ``[[sinks]]`` table minus name/type/inputs)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs


@attrs.define
class WebSocketConfig:
    #: Interface to listen on. Any host other than loopback requires authentication.
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one (the sink exposes the bound port as ``sink.port``).
    port: int = 9500
    #: The URL path clients connect to; any other path is closed with code 4404.
    path: str = "/"
    #: User name clients must present; enables authentication together with the key.
    auth_user: str | None = None
    #: Environment variable holding the key (read at start, never from the toml).
    auth_key_env: str = "STREAMER_WSS_AUTH_KEY"
    #: Authenticated (served) clients at most; more are closed with code 1013.
    max_clients: int = 100
    #: Connections not yet authenticated at most, in total; more are closed with 1013.
    #: Kept apart from max_clients so sockets that never authenticate cannot lock users out.
    max_unauthenticated: int = 16
    #: Connections not yet authenticated at most from one source address.
    max_unauthenticated_per_address: int = 4
    #: Seconds a failed authentication waits before it is answered (slows guessing).
    auth_failure_delay: float = 1.0
    #: Failed authentications from one address within auth_failure_window before every
    #: further attempt from it is refused (HTTP 429) until the window ends.
    max_auth_failures: int = 10
    #: Seconds over which max_auth_failures is counted.
    auth_failure_window: float = 60.0
    #: Control replies (acks, pongs, errors) queued per client; a client whose replies pile
    #: up past this is closed with 1008.
    max_queued_replies: int = 64
    #: Total (channel, data_type, symbol) entries one client may subscribe to; a subscribe
    #: that would go past it is refused with an error reply. "All symbols" counts as one.
    max_subscriptions_per_client: int = 10_000
    #: Certificate chain (PEM) for wss://; set together with tls_keyfile.
    tls_certfile: str | None = None
    #: Private key (PEM) for wss://.
    tls_keyfile: str | None = None
    #: Envelopes queued per client before its oldest are dropped.
    client_queue_size: int = 1000
    #: Envelopes dropped since a client's last completed send before it is disconnected.
    max_dropped: int = 5000
    #: Seconds between WebSocket pings; a client that does not answer within one more
    #: interval is disconnected. 0 disables pings.
    ping_interval: float = 20.0
    #: Seconds a client has to send its first-message authentication.
    auth_timeout: float = 10.0
    #: Seconds one send to a client may take before the client is disconnected.
    send_timeout: float = 10.0
    #: Seconds granted at shutdown to flush queued data and close clients with 1001.
    shutdown_timeout: float = 5.0
    #: Coalescing stops growing a message past this many bytes (a single batch larger than
    #: this is still sent whole); many clients refuse messages over 1 MiB.
    max_message_size: int = 262_144
    #: Largest message a client may send (bytes); larger ones close it with 1009.
    max_client_message: int = 65536

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.auth_user is not None and not self.auth_user:
            raise ValueError("auth_user must not be empty (leave it out to disable auth)")
        if not self.auth_key_env:
            raise ValueError("auth_key_env must name an environment variable")
        for name in ("max_clients", "client_queue_size", "max_dropped", "max_message_size",
                     "max_client_message", "max_unauthenticated",
                     "max_unauthenticated_per_address", "max_auth_failures",
                     "max_queued_replies", "max_subscriptions_per_client"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("ping_interval", "auth_timeout", "send_timeout", "shutdown_timeout",
                     "auth_failure_delay", "auth_failure_window"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile must be set together")
        if self.tls_certfile == "" or self.tls_keyfile == "":
            raise ValueError("tls_certfile and tls_keyfile must not be empty")
        if self.auth_failure_delay < 0:
            raise ValueError(f"auth_failure_delay must be >= 0, got {self.auth_failure_delay}")
        if self.ping_interval < 0:
            raise ValueError(f"ping_interval must be >= 0 (0 disables), got {self.ping_interval}")
        for name in ("auth_timeout", "send_timeout", "shutdown_timeout", "auth_failure_window"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        """What ``run`` would refuse at start (auth needed but not set up), for ``check`` too."""
        from streamer import FatalError
        from streamer_websocket.auth import resolve_credentials

        try:
            resolve_credentials(self, environ, "")
        except FatalError as exc:
            return [str(exc).split(": ", 1)[-1]]
        return []
