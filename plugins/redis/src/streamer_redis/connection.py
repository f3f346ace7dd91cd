"""Connection options shared by the ``redis`` and ``storage`` sinks, and the client they build.

The password never lives in streamer.toml: ``password_env`` names the environment variable
that holds it, read when the sink starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from streamer import redact_url, url_secret
from streamer.validators import at_least, at_least_field, between, greater_than

if TYPE_CHECKING:
    import redis

_SCHEMES = ("redis", "rediss", "unix")


def _url(instance: Any, _: attrs.Attribute[str | None], value: str | None) -> None:
    if value is None:
        return
    if urlsplit(value).scheme not in _SCHEMES:
        raise ValueError(
            f"url {redact_url(value)!r}: scheme must be one of redis://, rediss://, unix://"
        )
    if url_secret(value):
        raise ValueError(
            "url must not contain a password (it would sit in streamer.toml); "
            f"put it in the environment variable named by password_env "
            f"(${instance.password_env})"
        )


def _not_empty(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.define
class RedisConnectionConfig:
    """Where Redis is and how long to wait for it; subclassed by each sink's config. Every
    option is checked by its field validator, so the config loader reports all bad ones at
    once, each with its path."""

    #: ``redis://host:port/db``, ``rediss://`` (TLS) or ``unix:///path/redis.sock?db=0``.
    #: When set it wins over host/port/db. It must not carry a password (use password_env).
    url: str | None = attrs.field(default=None, validator=_url)
    host: str = "127.0.0.1"
    port: int = attrs.field(default=6379, validator=between(1, 65535))
    #: ACL user name (Redis 6+); None for the default user.
    username: str | None = None
    db: int = attrs.field(default=0, validator=at_least(0))
    #: Name of the environment variable holding the password (unset or empty: no AUTH).
    password_env: str = attrs.field(default="STREAMER_REDIS_PASSWORD", validator=_not_empty)
    #: Prefix of every channel and key this sink writes.
    main_key: str = attrs.field(default="bybit-streamer", validator=_not_empty)
    #: CA bundle to verify a rediss:// server with (default: the system store).
    tls_ca_file: str | None = None
    socket_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    socket_connect_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    #: Events held while Redis is down or slow; beyond it the oldest are dropped and counted.
    max_buffer: int = attrs.field(default=100_000, validator=at_least(1))
    #: Reconnect backoff (full jitter) bounds, seconds.
    reconnect_initial: float = attrs.field(default=0.5, validator=greater_than(0))
    reconnect_max: float = attrs.field(default=30.0, validator=at_least_field("reconnect_initial"))
    #: At shutdown, how long to keep retrying to write what is buffered while Redis is down.
    shutdown_timeout: float = attrs.field(default=5.0, validator=greater_than(0))

    def describe(self) -> str:
        """Where we connect, for log lines (never includes the password)."""
        if self.url is not None:
            return redact_url(self.url)
        return f"redis://{self.host}:{self.port}/{self.db}"


def make_client(config: RedisConnectionConfig) -> redis.Redis:
    """A sync client for the worker thread.

    redis-py's own retries are off (``Retry(NoBackoff(), 0)``): a failing write must come back
    to the sink at once, which keeps buffering and retries with its own backoff instead of
    sleeping inside a worker thread.
    """
    import redis  # here, not at the top: registering the plugin must not import redis-py
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    password = os.environ.get(config.password_env) or None
    options: dict[str, Any] = {
        "password": password,
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.socket_connect_timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if config.username is not None:
        options["username"] = config.username
    if config.url is not None:
        if config.url.startswith("rediss://") and config.tls_ca_file:
            options["ssl_ca_certs"] = config.tls_ca_file
        return redis.Redis.from_url(config.url, **options)
    return redis.Redis(host=config.host, port=config.port, db=config.db, **options)
