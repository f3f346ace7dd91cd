"""streamer: real-time Bybit V5 market data, a trio core plus plugins.

The public API is what this module exports (``__all__``) and the submodules
``streamer.wire``, ``streamer.intervals``, ``streamer.clock``, ``streamer.history``,
``streamer.validators``, ``streamer.net``, ``streamer.pretty``, ``streamer.config`` and
``streamer.testing``. Everything in a module whose name starts with ``_`` is the
implementation and may change without notice; plugins do not import it
(docs/writing_plugins.md, "What a plugin may import").
"""

from __future__ import annotations

from streamer._api import (
    BaseTransform,
    Context,
    DrivesClock,
    Emit,
    FatalError,
    HandlesGaps,
    HasCheckLines,
    HasDefaultOverflow,
    HasHistory,
    HasShutdownTimeout,
    HasStoredHistory,
    HoldsEvents,
    NotesGaps,
    ReportsBusy,
    Sink,
    Source,
    StreamGap,
    Transform,
    Validates,
)
from streamer._backoff import Backoff
from streamer._buffer_room import BufferRoom
from streamer._events import (
    Book,
    Channel,
    DataType,
    Derivatives,
    Event,
    Funding,
    Kline,
    Liquidation,
    Price,
    Ticker,
    Trade,
)
from streamer._health import Health, PartState
from streamer._hookspecs import RegisterCommand, RegisterSource, RegisterType, hookimpl
from streamer._inbox import Inbox
from streamer._logs import RateLimitedLog, redact_url, url_secret
from streamer._metrics import Metrics, Sample
from streamer._pipeline_view import NodeStatus, PipelineView

__version__ = "0.1.0"

#: Returned by ``streamer_transform_event`` to drop an event.
DROP: object = object()

__all__ = [
    "DROP",
    "Backoff",
    "BaseTransform",
    "Book",
    "BufferRoom",
    "Channel",
    "Context",
    "DataType",
    "Derivatives",
    "DrivesClock",
    "Emit",
    "Event",
    "FatalError",
    "Funding",
    "HandlesGaps",
    "HasCheckLines",
    "HasDefaultOverflow",
    "HasHistory",
    "HasShutdownTimeout",
    "HasStoredHistory",
    "Health",
    "HoldsEvents",
    "Inbox",
    "Kline",
    "Liquidation",
    "Metrics",
    "NodeStatus",
    "NotesGaps",
    "PartState",
    "PipelineView",
    "Price",
    "RateLimitedLog",
    "RegisterCommand",
    "RegisterSource",
    "RegisterType",
    "ReportsBusy",
    "Sample",
    "Sink",
    "Source",
    "StreamGap",
    "Ticker",
    "Trade",
    "Transform",
    "Validates",
    "hookimpl",
    "redact_url",
    "url_secret",
]
