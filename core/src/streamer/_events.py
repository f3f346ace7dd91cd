"""The event model: what sources produce, transforms reshape and sinks write.

Events are frozen ``msgspec.Struct`` instances: building one costs about as much as a tuple,
far less than an attrs class structured by cattrs (docs/background.md, "JSON decoding").
``gc=False`` because events never hold reference cycles and the hot path creates millions.

What flows between stages is never a single event but a *batch*: a ``list`` of events, one
per socket read or per exchange message. A batch may mix kinds and channels;
:func:`streamer.wire.render` groups it into wire envelopes.

``channel`` is the source's own name for the part of its market an event belongs to (the
Bybit plugin's ``"linear"`` and ``"spot"``, another exchange's ``"futures"``): the core
gives it no meaning. Sinks use it in keys, subjects and folder names, so a source names its
channels within :data:`streamer.validators.CHANNEL_NAME`.

The field names of ``to_wire`` are the format consumers of the older streamer read (Bybit's
short trade keys ``T s S v p i``, Bybit's ticker keys): a source for another exchange maps
its messages onto them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: A channel name, chosen by the source (see the module doc).
Channel = str
DataType = Literal["trades", "klines", "ticker", "price", "liquidations", "derivatives",
                   "funding", "book"]


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One public trade, with the exchange's values kept as it sends them.

    ``price`` and ``size`` stay strings (the wire's ``p`` and ``v``), so nothing is lost to
    float formatting; consumers that aggregate call ``float()`` once. The comments name the
    wire keys. The optional fields are extras some exchanges send (Bybit's ``L``, ``BT``,
    ``RPI``, ``seq``): nothing may rely on them, and the wire leaves them out when None.
    """

    channel: str
    symbol: str  # s
    ts: int  # T: fill time, epoch ms
    side: str  # S: "Buy" | "Sell"
    price: str  # p
    size: str  # v
    trade_id: str  # i
    tick_direction: str | None = None  # L
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
    ``trade_count`` is ``None`` when unknown (an exchange's own kline stream, such as Bybit's,
    does not carry it).
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
    """A full ticker snapshot (deltas already merged by the source).

    ``fields`` holds the ticker's keys, named as the wire format names them (Bybit's
    ``symbol``, ``lastPrice``, ``markPrice``, ...: a source for another exchange maps its
    own onto them where they mean the same); numeric strings are converted to numbers, empty
    strings stay as they are. Treat it as read-only.
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


class Liquidation(msgspec.Struct, frozen=True, gc=False):
    """One liquidation of a position, as the exchange publishes it (public, anonymous).

    The wire keys are Bybit's ``allLiquidation`` keys: ``T`` (epoch ms), ``s``, ``S`` (the
    side of the position liquidated: ``"Buy"`` a long, ``"Sell"`` a short), ``v`` (size) and
    ``p`` (bankruptcy price); size and price stay the exchange's strings, as a trade's do.
    There is no id: (T, s, S, v, p) is what tells two apart.
    """

    channel: str
    symbol: str  # s
    ts: int  # T
    side: str  # S
    size: str  # v
    price: str  # p

    data_type = "liquidations"

    def to_wire(self) -> dict[str, Any]:
        return {"T": self.ts, "s": self.symbol, "S": self.side, "v": self.size,
                "p": self.price}


class Derivatives(msgspec.Struct, frozen=True, gc=False):
    """The derivatives state of a contract, emitted when any of it changes: funding rate,
    next funding time, open interest (and its value), mark and index price.

    Wire keys are Bybit's ticker names (``fundingRate``, ``nextFundingTime``,
    ``openInterest``, ``openInterestValue``, ``markPrice``, ``indexPrice``), numbers as
    numbers; a value the exchange has not sent is null. ``ts`` is the exchange's time of
    the change (epoch ms).
    """

    channel: str
    symbol: str
    ts: int
    funding_rate: float | None
    next_funding_time: int | None
    open_interest: float | None
    open_interest_value: float | None
    mark_price: float | None
    index_price: float | None

    data_type = "derivatives"

    def to_wire(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "ts": self.ts, "fundingRate": self.funding_rate,
                "nextFundingTime": self.next_funding_time, "openInterest": self.open_interest,
                "openInterestValue": self.open_interest_value, "markPrice": self.mark_price,
                "indexPrice": self.index_price}


class Funding(msgspec.Struct, frozen=True, gc=False):
    """A funding settlement: at ``funding_time`` (epoch ms) the rate ``funding_rate``
    applied to ``symbol``. Wire: ``symbol``, ``fundingTime``, ``fundingRate``."""

    channel: str
    symbol: str
    funding_time: int
    funding_rate: float

    data_type = "funding"

    def to_wire(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "fundingTime": self.funding_time,
                "fundingRate": self.funding_rate}


class Book(msgspec.Struct, frozen=True, gc=False):
    """One order-book message of one symbol: a whole book (``kind`` "snapshot") or the
    levels that changed (``kind`` "delta").

    ``bids`` and ``asks`` are ``[price, size]`` pairs of strings exactly as the exchange sent
    them, in its order (bids best first, asks best first). In a delta, size ``"0"`` deletes
    the level and any other size inserts or replaces it; a snapshot replaces the book whole
    (an empty side is an empty book side). A source emits a delta only when it checked that
    it follows the previous message of the same book without a gap, so a consumer that
    applies every event of a symbol in order holds the source's book; after a gap the next
    event of that symbol is a snapshot. ``update_id`` counts the book's updates (it restarts
    after a snapshot that resets the book); ``seq`` is the exchange's cross sequence where it
    sends one; ``engine_ts`` the matching engine's time (epoch ms, comparable with trades'
    ``ts``) where known; ``ts`` the time the exchange pushed the message.
    """

    channel: str
    symbol: str
    kind: str  # "snapshot" | "delta"
    bids: list[list[str]]
    asks: list[list[str]]
    update_id: int
    ts: int
    seq: int | None = None
    engine_ts: int | None = None

    data_type = "book"

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "kind": self.kind,
            "bids": self.bids,
            "asks": self.asks,
            "update_id": self.update_id,
            "ts": self.ts,
        }
        if self.seq is not None:
            d["seq"] = self.seq
        if self.engine_ts is not None:
            d["engine_ts"] = self.engine_ts
        return d


Event = Trade | Kline | Ticker | Price | Liquidation | Derivatives | Funding | Book
