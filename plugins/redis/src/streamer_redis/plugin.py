"""Registers the ``redis`` sink."""

from __future__ import annotations

from streamer import hookimpl
from streamer.hookspecs import RegisterType
from streamer_redis.sink import RedisSink, RedisSinkConfig


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("redis", RedisSinkConfig, RedisSink)
