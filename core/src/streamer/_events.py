"""The event model: what sources produce, transforms reshape and sinks write.

Events are frozen ``msgspec.Struct`` instances: building one costs about as much as a tuple,
far less than an attrs class structured by cattrs (docs/background.md, "JSON decoding").
``gc=False`` because events never hold reference cycles and the hot path creates millions.

What flows between stages is never a single event but a *batch*: a ``list`` of events, one
per socket read or per Bybit message. A batch may mix kinds and channels;
:func:`streamer.wire.render` groups it into wire envelopes.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Channel = Literal["linear", "spot"]
DataType = Literal["trades", "klines", "ticker", "price"]


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One public trade, with Bybit's values kept as Bybit sends them.

    ``price`` and ``size`` stay strings (Bybit's ``p`` and ``v``), so nothing is lost to float
    formatting; consumers that aggregate call ``float()`` once.
    """

    channel: str
    symbol: str  # s
    ts: int  # T: fill time, epoch ms
    side: str  # S: "Buy" | "Sell"
    price: str  # p
    size: str  # v
    trade_id: str  # i
    tick_direction: str | None = None  # L (linear only)
    block_trade: bool | None = None  # BT
    rpi: bool | None = None  # RPI
    seq: int | None = None  # seq (may repeat across trades)

    data_type = "trades"

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "T": self.ts,
            "s": self.symbol,
            "S": self.side,
            "v": self.size,
            "p": self.price,
        }
        if self.tick_direction is not None:
            d["L"] = self.tick_direction
        d["i"] = self.trade_id
        if self.block_trade is not None:
            d["BT"] = self.block_trade
        if self.rpi is not None:
            d["RPI"] = self.rpi
        if self.seq is not None:
            d["seq"] = self.seq
        return d


class Kline(msgspec.Struct, frozen=True, gc=False):
    """One OHLCV candle.

    ``interval`` is the candle length in ms, ``timestamp`` its open time in epoch ms.
    ``trade_count`` is ``None`` when unknown (Bybit's own kline stream does not carry it).
    ``closed`` is true exactly once per candle, on the final value.
    """

    channel: str
    symbol: str
    interval: int
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int | None
    closed: bool = True
    turnover: float | None = None
    partial: bool = False

    data_type = "klines"

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "interval": self.interval,
            "timestamp": self.timestamp,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "trade_count": self.trade_count,
            "closed": self.closed,
        }
        if self.turnover is not None:
            d["turnover"] = self.turnover
        if self.partial:
            d["partial"] = True
        return d


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """A full ticker snapshot (linear deltas already merged) with Bybit's field names.

    ``fields`` holds Bybit's keys (``symbol``, ``lastPrice``, ``markPrice``, ...); numeric
    strings are converted to numbers, empty strings stay as they are. Treat it as read-only.
    """

    channel: str
    symbol: str
    ts: int
    fields: dict[str, Any]

    data_type = "ticker"

    def to_wire(self) -> dict[str, Any]:
        d = dict(self.fields)
        d.setdefault("symbol", self.symbol)
        d["ts"] = self.ts
        return d


class Price(msgspec.Struct, frozen=True, gc=False):
    """The current price of a symbol, emitted only when it changes."""

    channel: str
    symbol: str
    price: float
    ts: int

    data_type = "price"

    def to_wire(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "price": self.price, "timestamp": self.ts}


Event = Trade | Kline | Ticker | Price
