"""Registers the ``redis`` sink (pub/sub, streams) and the ``storage`` sink (snapshot keys)."""

from __future__ import annotations

from streamer import RegisterType, hookimpl
from streamer_redis.sink import RedisSink, RedisSinkConfig
from streamer_redis.storage import StorageConfig, StorageSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("redis", RedisSinkConfig, RedisSink)
    register("storage", StorageConfig, StorageSink)
