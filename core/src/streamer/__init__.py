"""streamer: real-time Bybit V5 market data, a trio core plus plugins."""

from __future__ import annotations

from streamer.api import (
    BaseTransform,
    Context,
    Emit,
    FatalError,
    Sink,
    Source,
    StreamGap,
    Transform,
)
from streamer.events import Event, Kline, Price, Ticker, Trade
from streamer.health import Health, PartState
from streamer.hookspecs import hookimpl
from streamer.inbox import Inbox
from streamer.metrics import Metrics, Sample

__version__ = "0.1.0"

#: Returned by ``streamer_transform_event`` to drop an event.
DROP: object = object()

__all__ = [
    "DROP",
    "BaseTransform",
    "Context",
    "Emit",
    "Event",
    "FatalError",
    "Health",
    "Inbox",
    "Kline",
    "Metrics",
    "PartState",
    "Price",
    "Sample",
    "Sink",
    "Source",
    "StreamGap",
    "Ticker",
    "Trade",
    "Transform",
    "hookimpl",
]
