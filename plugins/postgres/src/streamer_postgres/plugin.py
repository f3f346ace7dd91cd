"""Registers the ``postgres`` sink and the ``streamer db`` and ``streamer export`` commands.

Nothing heavy is imported here: the sink (with trio, and psycopg when it is built) comes in
when the pipeline builds one, each command's module when that command is chosen.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from streamer import Context, RegisterCommand, RegisterType, hookimpl
from streamer_postgres.config import PostgresSinkConfig

if TYPE_CHECKING:
    from streamer_postgres.sink import PostgresSink


def make_postgres(config: PostgresSinkConfig, context: Context) -> PostgresSink:
    from streamer_postgres.sink import PostgresSink

    return PostgresSink(config, context)


def _configure_db(parser: argparse.ArgumentParser) -> None:
    from streamer_postgres.command import configure

    configure(parser)


def _db(args: argparse.Namespace) -> int:
    from streamer_postgres.command import main

    return main(args)


def _configure_export(parser: argparse.ArgumentParser) -> None:
    from streamer_postgres.export import configure

    configure(parser)


def _export(args: argparse.Namespace) -> int:
    from streamer_postgres.export import main

    return main(args)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("postgres", PostgresSinkConfig, make_postgres)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("db", "PostgreSQL sink tables: `streamer db migrate -c streamer.toml`",
             _configure_db, _db)
    register("export", "a time range of a postgres sink's table to CSV or Parquet",
             _configure_export, _export)
