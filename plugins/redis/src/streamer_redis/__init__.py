"""Two Redis sinks in one distribution: ``redis`` (pub/sub and Redis Streams) and ``storage``
(the older Bybit streamer's snapshot keys), sharing one connection config and one buffered
writer."""

from streamer_redis.connection import RedisConnectionConfig, make_client
from streamer_redis.writer import BufferedWriter

__all__ = ["BufferedWriter", "RedisConnectionConfig", "make_client"]
