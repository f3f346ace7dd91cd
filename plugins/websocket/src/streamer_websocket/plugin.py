"""Registers the ``websocket`` sink and the ``streamer tail`` command."""

from __future__ import annotations

from streamer import RegisterCommand, RegisterType, hookimpl
from streamer_websocket import tail
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.sink import WebSocketSink


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("websocket", WebSocketConfig, WebSocketSink)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("tail", tail.HELP, tail.configure, tail.main)
