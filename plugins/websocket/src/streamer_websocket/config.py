"""Options of the ``websocket`` sink (the ``[[sinks]]`` table minus name/type/inputs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from streamer.validators import at_least, between, greater_than


def _absolute_path(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"{attribute.name}: must start with '/', got {value!r}")


def _not_empty(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name}: must name an environment variable")


def _not_empty_if_set(_: Any, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value == "":
        raise ValueError(f"{attribute.name}: must not be empty (leave it out instead)")


def _networks(_: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    from streamer_websocket.forwarded import parse_networks

    try:
        parse_networks(value)
    except ValueError as exc:
        raise ValueError(f"{attribute.name}: {exc}") from None


def _share_of_pool(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    share = MIN_ADDRESSES_TO_FILL_POOL
    if value * share > instance.max_unauthenticated:
        raise ValueError(
            f"{attribute.name}: expected at most max_unauthenticated / {share} "
            f"({instance.max_unauthenticated // share}), got {value}: fewer than {share} "
            "addresses must never fill the pool")


def _tls_pair(instance: Any, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    _not_empty_if_set(instance, attribute, value)
    if (instance.tls_certfile is None) != (value is None):
        raise ValueError("tls_keyfile: tls_certfile and tls_keyfile must be set together")


#: Source addresses needed at least to fill the pool of unauthenticated places: one address
#: may hold at most this fraction of it, so a few addresses can never turn every other away.
MIN_ADDRESSES_TO_FILL_POOL = 8


@attrs.define
class WebSocketConfig:
    """Every option is checked by its field validator, so the config loader reports all bad
    ones at once, each with its path (non-finite numbers are refused by the loader)."""

    #: Serve the web view (a status and market page, docs/plugins/websocket.md) at ``/`` on
    #: the same host and port, to the same credentials; WebSocket clients are unaffected.
    web: bool = False
    #: Interface to listen on. Any host other than loopback requires authentication.
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one (the sink exposes the bound port as ``sink.port``).
    port: int = attrs.field(default=9500, validator=between(0, 65535))
    #: The URL path clients connect to; any other path is closed with code 4404.
    path: str = attrs.field(default="/", validator=_absolute_path)
    #: User name clients must present; enables authentication together with the key.
    auth_user: str | None = attrs.field(default=None, validator=_not_empty_if_set)
    #: Environment variable holding the key (read at start, never from the toml).
    auth_key_env: str = attrs.field(default="STREAMER_WSS_AUTH_KEY", validator=_not_empty)
    #: Authenticated (served) clients at most; more are closed with code 1013.
    max_clients: int = attrs.field(default=100, validator=at_least(1))
    #: Connections not yet authenticated at most, in total; more are closed with 1013.
    #: Kept apart from max_clients so sockets that never authenticate cannot lock users out.
    max_unauthenticated: int = attrs.field(default=64, validator=at_least(1))
    #: Connections not yet authenticated at most from one client address; at most
    #: max_unauthenticated / 8, so that no fewer than 8 addresses can fill the pool.
    max_unauthenticated_per_address: int = attrs.field(
        default=4, validator=[at_least(1), _share_of_pool])
    #: Reverse proxies (addresses or CIDR networks) whose forwarding header is believed:
    #: from them, per-address limits count the client the header names; from any other
    #: peer the header is ignored. Empty: every limit counts the TCP peer.
    trusted_proxies: list[str] = attrs.field(factory=list, validator=_networks)
    #: The header the trusted proxies write: "x-forwarded-for" (Traefik, nginx's
    #: $proxy_add_x_forwarded_for) or "forwarded" (RFC 7239). Only that one is read, so a
    #: client cannot slip in the other past a proxy that passes it through.
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    #: Seconds a failed authentication waits before it is answered (slows guessing).
    auth_failure_delay: float = attrs.field(default=1.0, validator=at_least(0))
    #: Failed authentications of one (client address, user) within auth_failure_window before
    #: every further attempt of that user from that address is refused (HTTP 429, or close
    #: code 4429 for first-message auth), right key or not, until the window ends.
    max_auth_failures: int = attrs.field(default=10, validator=at_least(1))
    #: Seconds over which max_auth_failures is counted.
    auth_failure_window: float = attrs.field(default=60.0, validator=greater_than(0))
    #: Control replies (acks, pongs, errors) queued per client; a client whose replies pile
    #: up past this is closed with 1008.
    max_queued_replies: int = attrs.field(default=64, validator=at_least(1))
    #: Total (channel, data_type, symbol) entries one client may subscribe to; a subscribe
    #: that would go past it is refused with an error reply. "All symbols" counts as one.
    max_subscriptions_per_client: int = attrs.field(default=10_000, validator=at_least(1))
    #: Certificate chain (PEM) for wss://; set together with tls_keyfile.
    tls_certfile: str | None = attrs.field(default=None, validator=_not_empty_if_set)
    #: Private key (PEM) for wss://.
    tls_keyfile: str | None = attrs.field(default=None, validator=_tls_pair)
    #: Envelopes queued per client before its oldest are dropped.
    client_queue_size: int = attrs.field(default=1000, validator=at_least(1))
    #: Envelopes dropped since a client's last completed send before it is disconnected.
    max_dropped: int = attrs.field(default=5000, validator=at_least(1))
    #: Seconds between WebSocket pings; a client that does not answer within one more
    #: interval is disconnected. 0 disables pings.
    ping_interval: float = attrs.field(default=20.0, validator=at_least(0))
    #: Seconds a client has to send its first-message authentication.
    auth_timeout: float = attrs.field(default=10.0, validator=greater_than(0))
    #: Seconds one send to a client may take before the client is disconnected.
    send_timeout: float = attrs.field(default=10.0, validator=greater_than(0))
    #: Seconds granted at shutdown to flush queued data and close clients with 1001.
    shutdown_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    #: Coalescing stops growing a message past this many bytes (a single batch larger than
    #: this is still sent whole); many clients refuse messages over 1 MiB.
    max_message_size: int = attrs.field(default=262_144, validator=at_least(1))
    #: Seconds between the writes to a client that asked {"op": "batch"} (the web view):
    #: everything due to it goes out in one write per interval, at most.
    batch_interval: float = attrs.field(default=0.2, validator=between(0.01, 10.0))
    #: Largest message a client may send (bytes); larger ones close it with 1009.
    max_client_message: int = attrs.field(default=65536, validator=at_least(1))

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        """What ``run`` would refuse at start (auth needed but not set up), for ``check`` too."""
        from streamer import FatalError
        from streamer_websocket.auth import resolve_credentials

        try:
            resolve_credentials(self, environ, "")
        except FatalError as exc:
            return [str(exc).split(": ", 1)[-1]]
        return []
