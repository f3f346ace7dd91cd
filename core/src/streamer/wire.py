"""The output wire format, shared by every sink.

Each envelope is ``{"channel": <the source's channel name>, "data_type": "klines"|"trades"|
"ticker"|"price"|"liquidations"|"derivatives"|"funding"|"book", "data": [...]}`` (the Bybit
source's channels are ``"linear"``, ``"inverse"``, ``"spot"`` and ``"option"``); this is
the format consumers of the older streamer read, so no name changes (``liquidations``, keys
``T s S v p``, ``derivatives`` / ``funding``, keys Bybit's ticker names, and ``book`` are new).
A batch is grouped into as few envelopes as possible (one per channel and data type, in
order of first appearance) and encoded once, so every sink and client can share the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from streamer._events import Event, Kline, Trade

_encoder = msgspec.json.Encoder()


class _WireTrade(msgspec.Struct, omit_defaults=True, gc=False):
    """``Trade.to_wire()`` as a struct: the same keys in the same order, the optional ones
    left out when None; msgspec encodes it in C, about twice as fast as building the dict."""

    T: int
    s: str
    S: str
    v: str
    p: str
    L: str | None = None
    i: str | msgspec.UnsetType = msgspec.UNSET  # never left out (a default never equal to it)
    BT: bool | None = None
    RPI: bool | None = None
    seq: int | None = None


class _WireKline(msgspec.Struct, omit_defaults=True, gc=False):
    """``Kline.to_wire()`` as a struct (``trade_count`` and ``closed`` always present,
    ``turnover`` only when known, ``partial`` only when true)."""

    symbol: str
    interval: int
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int | None
    closed: bool
    turnover: float | None = None
    partial: bool = False


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


def render_encoded(events: Iterable[Event]) -> list[tuple[str, str, bytes]]:
    """``(channel, data_type, encode(envelope))`` for every envelope of ``render(events)``,
    byte for byte, without building a dict per trade or kline: for sinks that only need the
    bytes (Trade and Kline, the bulk of every busy batch, go through wire structs)."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for e in events:
        key = (e.channel, e.data_type)
        data = groups.get(key)
        if data is None:
            data = groups[key] = []
        if type(e) is Kline:
            data.append(_WireKline(e.symbol, e.interval, e.timestamp, e.open, e.high, e.low,
                                   e.close, e.volume, e.trade_count, e.closed, e.turnover,
                                   e.partial))
        elif type(e) is Trade:
            data.append(_WireTrade(e.ts, e.symbol, e.side, e.size, e.price, e.tick_direction,
                                   e.trade_id, e.block_trade, e.rpi, e.seq))
        else:
            data.append(e.to_wire())
    return [
        (channel, data_type,
         _encoder.encode({"channel": channel, "data_type": data_type, "data": data}))
        for (channel, data_type), data in groups.items()
    ]
