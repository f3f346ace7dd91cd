"""Registers the ``nats`` sink and the ``nats`` source."""

from __future__ import annotations

from streamer import RegisterType, hookimpl
from streamer_nats.sink import NatsSink, NatsSinkConfig
from streamer_nats.source import NatsSource, NatsSourceConfig


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("nats", NatsSinkConfig, NatsSink)


@hookimpl
def streamer_register_sources(register: RegisterType) -> None:
    register("nats", NatsSourceConfig, NatsSource)
