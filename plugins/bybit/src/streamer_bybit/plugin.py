"""Registers the ``bybit.linear``, ``bybit.spot`` and ``bybit.replay`` sources.

Registering imports only the configuration (plugin loading and ``streamer check`` stay
cheap); each factory imports its source, with websockets, zstandard, ..., when the pipeline
builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterSource, hookimpl
from streamer_bybit.config import BybitLinearConfig, BybitSpotConfig, ReplayConfig

if TYPE_CHECKING:
    from streamer_bybit.replay import ReplaySource
    from streamer_bybit.source import BybitSource


def make_linear(config: BybitLinearConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "linear")


def make_spot(config: BybitSpotConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "spot")


def make_replay(config: ReplayConfig, context: Context) -> ReplaySource:
    from streamer_bybit.replay import make_replay

    return make_replay(config, context)


@hookimpl
def streamer_register_sources(register: RegisterSource) -> None:
    register("bybit.linear", BybitLinearConfig, make_linear)
    register("bybit.spot", BybitSpotConfig, make_spot)
    # A capture file has no deadline: a replay waits for slow sinks rather than drop.
    register("bybit.replay", ReplayConfig, make_replay, live=False)
