"""Connection options shared by the ``redis`` and ``storage`` sinks, and the client they build.

The password never lives in streamer.toml: ``password_env`` names the environment variable
that holds it, read when the sink starts.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import attrs
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.logs import redact_url, url_secret

_SCHEMES = ("redis", "rediss", "unix")


@attrs.define
class RedisConnectionConfig:
    """Where Redis is and how long to wait for it; subclassed by each sink's config."""

    #: ``redis://host:port/db``, ``rediss://`` (TLS) or ``unix:///path/redis.sock?db=0``.
    #: When set it wins over host/port/db. It must not carry a password (use password_env).
    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    #: ACL user name (Redis 6+); None for the default user.
    username: str | None = None
    db: int = 0
    #: Name of the environment variable holding the password (unset or empty: no AUTH).
    password_env: str = "STREAMER_REDIS_PASSWORD"
    #: Prefix of every channel and key this sink writes.
    main_key: str = "bybit-streamer"
    #: CA bundle to verify a rediss:// server with (default: the system store).
    tls_ca_file: str | None = None
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    #: Events held while Redis is down or slow; beyond it the oldest are dropped and counted.
    max_buffer: int = 100_000
    #: Reconnect backoff (full jitter) bounds, seconds.
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    #: At shutdown, how long to keep retrying to write what is buffered while Redis is down.
    shutdown_timeout: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in _SCHEMES:
                raise ValueError(
                    f"url {redact_url(self.url)!r}: scheme must be one of redis://, rediss://, "
                    "unix://"
                )
            if url_secret(self.url):
                raise ValueError(
                    "url must not contain a password (it would sit in streamer.toml); "
                    f"put it in the environment variable named by password_env "
                    f"(${self.password_env})"
                )
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.db < 0:
            raise ValueError(f"db must be >= 0, got {self.db}")
        if not self.main_key:
            raise ValueError("main_key must not be empty")
        if not self.password_env:
            raise ValueError("password_env must name an environment variable")
        if self.socket_timeout <= 0 or self.socket_connect_timeout <= 0:
            raise ValueError("socket_timeout and socket_connect_timeout must be > 0")
        if self.max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {self.max_buffer}")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_initial <= reconnect_max")
        if self.shutdown_timeout <= 0:
            raise ValueError("shutdown_timeout must be > 0")

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
