"""Fixtures for the websocket sink tests."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from streamer import Inbox
from streamer_websocket.sink import WebSocketSink
from websocket.helpers import StartSink, make_sink


@pytest.fixture
def start_sink(nursery: trio.Nursery) -> StartSink:
    """``sink, inbox = await start_sink(**config)``: a running sink on a free port."""

    async def start(inbox_size: int = 10_000, **options: Any) -> tuple[WebSocketSink, Inbox]:
        sink = make_sink(**options)
        inbox = Inbox("ws", maxsize=inbox_size, overflow="block")
        await nursery.start(sink.run, inbox)
        return sink, inbox

    return start
