"""The ``redis`` sink (pub/sub and Redis Streams) and the buffered Redis writer it shares with
the ``storage`` sink (streamer-storage)."""

from streamer_redis.connection import RedisConnectionConfig, make_client
from streamer_redis.writer import BufferedWriter

__all__ = ["BufferedWriter", "RedisConnectionConfig", "make_client"]
