"""Registers the ``postgres`` sink and the ``streamer db`` and ``streamer export`` commands.
Nothing heavy is imported here: psycopg comes in when a sink is built or a command runs."""

from __future__ import annotations

from streamer import RegisterCommand, RegisterType, hookimpl
from streamer_postgres import command, export
from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.sink import PostgresSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("postgres", PostgresSinkConfig, PostgresSink)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("db", command.HELP, command.configure, command.main)
    register("export", export.HELP, export.configure, export.main)
