"""Registers the ``websocket`` sink and the ``streamer tail`` command.

The sink and the tail client, with trio-websocket, are imported when the pipeline builds the
sink or the command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamer import Context, RegisterCommand, RegisterType, hookimpl
from streamer_websocket import tail_cli
from streamer_websocket.config import WebSocketConfig

if TYPE_CHECKING:
    from streamer_websocket.sink import WebSocketSink


def make_websocket(config: WebSocketConfig, context: Context) -> WebSocketSink:
    from streamer_websocket.sink import WebSocketSink

    return WebSocketSink(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("websocket", WebSocketConfig, make_websocket)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("tail", tail_cli.HELP, tail_cli.configure, tail_cli.main)
