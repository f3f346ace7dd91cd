"""streamer: real-time Bybit V5 market data, a trio core plus plugins.

The public API is what this module exports (``__all__``) and the submodules
``streamer.wire``, ``streamer.intervals``, ``streamer.clock``, ``streamer.history``,
``streamer.validators``, ``streamer.net``, ``streamer.pretty``, ``streamer.config`` and
``streamer.testing``. Everything in a module whose name starts with ``_`` is the
implementation and may change without notice; plugins do not import it
(docs/writing_plugins.md, "What a plugin may import").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamer._api import (
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
from streamer._health import Health, PartState
from streamer._hookspecs import RegisterCommand, RegisterSource, RegisterType, hookimpl
from streamer._logs import RateLimitedLog, redact_url, url_secret
from streamer._metrics import Metrics, Sample
from streamer._pipeline_view import NodeStatus, PipelineView

if TYPE_CHECKING:
    from streamer._base_transform import BaseTransform
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
    from streamer._inbox import Inbox

_EVENT_NAMES = frozenset({"Book", "Channel", "DataType", "Derivatives", "Event", "Funding",
                          "Kline", "Liquidation", "Price", "Ticker", "Trade"})


def __getattr__(name: str) -> Any:
    """The names whose modules load trio (the inbox, its back-pressure, the base transform)
    or msgspec (the events), imported when first asked for (PEP 562): a plugin's registration
    module takes ``hookimpl``, ``Context`` and its config's capabilities, and registering the
    plugins and ``streamer check`` need neither library."""
    value: Any
    if name in _EVENT_NAMES:
        from streamer import _events

        value = getattr(_events, name)
    elif name == "Inbox":
        from streamer import _inbox

        value = _inbox.Inbox
    elif name == "BufferRoom":
        from streamer import _buffer_room

        value = _buffer_room.BufferRoom
    elif name == "BaseTransform":
        from streamer import _base_transform

        value = _base_transform.BaseTransform
    else:
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    globals()[name] = value  # asked for once: later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
