"""Registers the ``bybit.linear``, ``bybit.inverse``, ``bybit.spot``, ``bybit.option`` and
``bybit.replay`` sources, the
``streamer migrate-env`` command (the older Bybit streamer's ``.env`` to a streamer.toml), and
warns at ``streamer run`` about that ``.env``'s variables when they are set but not read; and
``streamer demo`` (the simulated market through the example pipeline).

Registering imports only the configuration (plugin loading and ``streamer check`` stay
cheap); each factory imports its source, with websockets, zstandard, ..., when the pipeline
builds one, and each command its module (the demo with the simulator) when it is chosen.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING

from streamer import Context, RegisterCommand, RegisterSource, hookimpl
from streamer_bybit.config import (
    BybitInverseConfig,
    BybitLinearConfig,
    BybitOptionConfig,
    BybitSpotConfig,
    ReplayConfig,
)

if TYPE_CHECKING:
    from streamer_bybit.replay import ReplaySource
    from streamer_bybit.source import BybitSource


def make_linear(config: BybitLinearConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "linear")


def make_spot(config: BybitSpotConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "spot")


def make_inverse(config: BybitInverseConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "inverse")


def make_option(config: BybitOptionConfig, context: Context) -> BybitSource:
    from streamer_bybit.source import BybitSource

    return BybitSource(config, context, "option")


def make_replay(config: ReplayConfig, context: Context) -> ReplaySource:
    from streamer_bybit.replay import make_replay

    return make_replay(config, context)


@hookimpl
def streamer_register_sources(register: RegisterSource) -> None:
    register("bybit.linear", BybitLinearConfig, make_linear)
    register("bybit.spot", BybitSpotConfig, make_spot)
    register("bybit.inverse", BybitInverseConfig, make_inverse)
    register("bybit.option", BybitOptionConfig, make_option)
    # A capture file has no deadline: a replay waits for slow sinks rather than drop.
    register("bybit.replay", ReplayConfig, make_replay, live=False)


def _configure_migrate_env(parser: argparse.ArgumentParser) -> None:
    from streamer_bybit.migrate_env import configure

    configure(parser)


def _migrate_env(args: argparse.Namespace) -> int:
    from streamer_bybit.migrate_env import main

    return main(args)


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    from streamer_bybit.demo import configure

    configure(parser)


def _demo(args: argparse.Namespace) -> int:
    from streamer_bybit.demo import main

    return main(args)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("migrate-env", "print the streamer.toml equivalent to the older streamer's .env",
             _configure_migrate_env, _migrate_env)
    register("demo", "stream a simulated Bybit market through the example pipeline (offline, "
             "no Redis)", _configure_demo, _demo)


@hookimpl
def streamer_environment_warnings(environ: Mapping[str, str], read: Set[str]) -> list[str]:
    from streamer_bybit.oldenv import ignored_warning

    return ignored_warning(environ, read)
