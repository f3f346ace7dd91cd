"""The ops listener of a small pipeline on a free loopback port, and clients that connect to
it from a chosen loopback source address (127.0.0.0/8 is all local on Linux)."""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from streamer._config import load_config_text
from streamer._metrics_http import OpsLimits, OpsServer, serve_ops
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline

TOML = '[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n[[sinks]]\ntype = "console"\n'


@asynccontextmanager
async def serving(limits: OpsLimits = OpsLimits()) -> AsyncIterator[OpsServer]:
    pm = load_plugin_manager()
    pipeline = Pipeline(load_config_text(TOML, pm, environ={}), pm)
    async with trio.open_nursery() as nursery:
        server: OpsServer = await nursery.start(
            functools.partial(serve_ops, pipeline, "127.0.0.1:0", limits=limits))
        yield server
        nursery.cancel_scope.cancel()


async def connect_from(source: str, port: int, *, receive_buffer: int | None = None
                       ) -> trio.SocketStream:
    """A connection to 127.0.0.1:port from ``source`` (bound before connecting);
    ``receive_buffer`` pins SO_RCVBUF so that a client that does not read stalls the sender."""
    sock = trio.socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (polling, at most ``timeout`` seconds) until ``condition()`` holds: what the server
    did with connections it accepted is only seen in its counts."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.001)
