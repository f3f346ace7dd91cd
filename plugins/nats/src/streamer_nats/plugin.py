"""Registers the ``nats`` sink and the ``nats`` source (each, with nats-py, is imported when
the pipeline builds one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterSource, RegisterType, hookimpl
from streamer_nats.config import NatsSinkConfig, NatsSourceConfig

if TYPE_CHECKING:
    from streamer_nats.sink import NatsSink
    from streamer_nats.source import NatsSource


def make_sink(config: NatsSinkConfig, context: Context) -> NatsSink:
    from streamer_nats.sink import NatsSink

    return NatsSink(config, context)


def make_source(config: NatsSourceConfig, context: Context) -> NatsSource:
    from streamer_nats.source import NatsSource

    return NatsSource(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("nats", NatsSinkConfig, make_sink)


@hookimpl
def streamer_register_sources(register: RegisterSource) -> None:
    # Not live: the stream holds what the source has not acknowledged (within its retention),
    # and the source acknowledges once the sinks accepted it: waiting for a sink loses nothing.
    register("nats", NatsSourceConfig, make_source, live=False)
