"""Registers the ``console`` sink."""

from __future__ import annotations

from streamer import RegisterType, hookimpl
from streamer_console.sink import ConsoleConfig, ConsoleSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("console", ConsoleConfig, ConsoleSink)
