"""Registers the ``files`` sink."""

from __future__ import annotations

from streamer import RegisterType, hookimpl
from streamer_files.sink import FilesConfig, FilesSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("files", FilesConfig, FilesSink)
