"""Registers the ``redis`` sink (pub/sub, streams) and the ``storage`` sink (snapshot keys).

Each sink, with redis-py, is imported when the pipeline builds one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterType, hookimpl
from streamer_redis.config import RedisSinkConfig, StorageConfig

if TYPE_CHECKING:
    from streamer_redis.sink import RedisSink
    from streamer_redis.storage import StorageSink


def make_redis(config: RedisSinkConfig, context: Context) -> RedisSink:
    from streamer_redis.sink import RedisSink

    return RedisSink(config, context)


def make_storage(config: StorageConfig, context: Context) -> StorageSink:
    from streamer_redis.storage import StorageSink

    return StorageSink(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("redis", RedisSinkConfig, make_redis)
    register("storage", StorageConfig, make_storage)
