"""Registers the ``console`` sink (imported, with trio, when the pipeline builds one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterType, hookimpl
from streamer_console.config import ConsoleConfig

if TYPE_CHECKING:
    from streamer_console.sink import ConsoleSink


def make_console(config: ConsoleConfig, context: Context) -> ConsoleSink:
    from streamer_console.sink import ConsoleSink

    return ConsoleSink(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("console", ConsoleConfig, make_console)
