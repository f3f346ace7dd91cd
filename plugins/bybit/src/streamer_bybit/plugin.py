"""Registers the ``bybit.linear``, ``bybit.spot`` and ``bybit.replay`` sources and the
``streamer demo`` command."""

from __future__ import annotations

from streamer import Context, RegisterCommand, RegisterSource, hookimpl
from streamer_bybit import demo
from streamer_bybit.replay import ReplayConfig, make_replay
from streamer_bybit.source import BybitLinearConfig, BybitSource, BybitSpotConfig


def make_linear(config: BybitLinearConfig, context: Context) -> BybitSource:
    return BybitSource(config, context, "linear")


def make_spot(config: BybitSpotConfig, context: Context) -> BybitSource:
    return BybitSource(config, context, "spot")


@hookimpl
def streamer_register_sources(register: RegisterSource) -> None:
    register("bybit.linear", BybitLinearConfig, make_linear)
    register("bybit.spot", BybitSpotConfig, make_spot)
    # A capture file has no deadline: a replay waits for slow sinks rather than drop.
    register("bybit.replay", ReplayConfig, make_replay, live=False)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("demo", demo.HELP, demo.configure, demo.main)
