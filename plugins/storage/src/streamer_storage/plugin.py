"""Registers the ``storage`` sink."""

from __future__ import annotations

from streamer import hookimpl
from streamer.hookspecs import RegisterType
from streamer_storage.sink import StorageConfig, StorageSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("storage", StorageConfig, StorageSink)
