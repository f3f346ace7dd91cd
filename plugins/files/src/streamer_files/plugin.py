"""Registers the ``files`` sink (the sink, with pyarrow and zstandard, is imported when the
pipeline builds one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterType, hookimpl
from streamer_files.config import FilesConfig

if TYPE_CHECKING:
    from streamer_files.sink import FilesSink


def make_files(config: FilesConfig, context: Context) -> FilesSink:
    from streamer_files.sink import FilesSink

    return FilesSink(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("files", FilesConfig, make_files)
