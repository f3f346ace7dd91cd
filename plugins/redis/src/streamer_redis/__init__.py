"""Two Redis sinks in one distribution: ``redis`` (pub/sub and Redis Streams) and ``storage``
(the older Bybit streamer's snapshot keys), sharing one connection config and one buffered
writer."""

from __future__ import annotations

from typing import Any

from streamer_redis.connection import RedisConnectionConfig, make_client

__all__ = ["BufferedWriter", "RedisConnectionConfig", "make_client"]


def __getattr__(name: str) -> Any:
    # The writer imports redis-py: only when asked for (plugin loading imports this package).
    if name == "BufferedWriter":
        from streamer_redis.writer import BufferedWriter

        return BufferedWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
