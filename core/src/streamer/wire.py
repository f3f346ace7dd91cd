"""The output wire format, shared by every sink.

Each envelope is ``{"channel": "linear"|"spot", "data_type": "klines"|"trades"|"ticker"|
"price", "data": [...]}``; consumers of the older Bybit streamer depend on these names.
A batch is grouped into as few envelopes as possible (one per channel and data type, in
order of first appearance) and encoded once, so every sink and client can share the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from streamer._events import Event

_encoder = msgspec.json.Encoder()


def render(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Group ``events`` into wire envelopes, keeping the order of events within a group."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in events:
        key = (event.channel, event.data_type)
        data = groups.get(key)
        if data is None:
            data = groups[key] = []
        data.append(event.to_wire())
    return [
        {"channel": channel, "data_type": data_type, "data": data}
        for (channel, data_type), data in groups.items()
    ]


def encode(envelope: dict[str, Any]) -> bytes:
    """JSON bytes of one envelope (compact, UTF-8)."""
    return _encoder.encode(envelope)


def render_bytes(events: Iterable[Event]) -> list[bytes]:
    """``render`` then ``encode``: one JSON document per envelope."""
    return [_encoder.encode(env) for env in render(events)]
