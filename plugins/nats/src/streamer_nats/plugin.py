"""Registers the ``nats`` sink and the ``nats`` source."""

from __future__ import annotations

from streamer import hookimpl
from streamer.hookspecs import RegisterType
from streamer_nats.sink import NatsSink, NatsSinkConfig


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("nats", NatsSinkConfig, NatsSink)
