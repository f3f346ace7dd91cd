"""Registers the ``websocket`` sink and the ``streamer tail`` command.

The sink and the tail command (its arguments, and the client with trio-websocket) are imported
when the pipeline builds the sink or the command is chosen.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from streamer import Context, RegisterCommand, RegisterType, hookimpl
from streamer_websocket.config import WebSocketConfig

if TYPE_CHECKING:
    from streamer_websocket.sink import WebSocketSink


def make_websocket(config: WebSocketConfig, context: Context) -> WebSocketSink:
    from streamer_websocket.sink import WebSocketSink

    return WebSocketSink(config, context)


@hookimpl
def streamer_register_sinks(register: RegisterType) -> None:
    register("websocket", WebSocketConfig, make_websocket)


def _configure_tail(parser: argparse.ArgumentParser) -> None:
    from streamer_websocket.tail_cli import configure

    configure(parser)


def _tail(args: argparse.Namespace) -> int:
    from streamer_websocket.tail_cli import main

    return main(args)


@hookimpl
def streamer_register_commands(register: RegisterCommand) -> None:
    register("tail", "connect to a websocket sink and print what it sends", _configure_tail,
             _tail)
