"""Registers the ``nats`` sink and the ``nats`` source."""

from __future__ import annotations

from streamer import RegisterSource, RegisterType, hookimpl
from streamer_nats.sink import NatsSink, NatsSinkConfig
from streamer_nats.source import NatsSource, NatsSourceConfig


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("nats", NatsSinkConfig, NatsSink)


@hookimpl
def streamer_register_sources(register: RegisterSource) -> None:
    # Not live: the stream holds what the source has not acknowledged (within its retention),
    # and the source acknowledges once the sinks accepted it: waiting for a sink loses nothing.
    register("nats", NatsSourceConfig, NatsSource, live=False)
