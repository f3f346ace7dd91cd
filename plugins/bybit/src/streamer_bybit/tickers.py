"""Ticker state: merge linear snapshot + deltas, keep spot snapshots, derive Price events.

Bybit sends linear tickers as one snapshot followed by deltas carrying only the changed
fields, so a consumer needs the merged state to see a full ticker; spot sends snapshots only.
State is reset on every (re)subscribe, because a fresh snapshot follows each subscribe.
"""

from __future__ import annotations

from typing import Any

from streamer import Event, Price, Ticker
from streamer_bybit.derivatives import DerivativesTracker


def to_number(value: Any) -> Any:
    """Bybit's numeric strings as floats; empty strings and words ("PlusTick") unchanged."""
    if type(value) is str and value:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def numeric_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {key: to_number(value) for key, value in data.items()}


class PriceTracker:
    """Emits a :class:`Price` only when a symbol's chosen price changes."""

    __slots__ = ("channel", "last")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.last: dict[str, float] = {}

    def update(self, symbol: str, price: Any, ts: int, out: list[Event]) -> None:
        if type(price) is not float or self.last.get(symbol) == price:
            return
        self.last[symbol] = price
        out.append(Price(self.channel, symbol, price, ts))


class TickerBook:
    """Merged ticker state of the symbols of one connection.

    ``emit_tickers``: produce :class:`Ticker` events; ``price_field``: also produce
    :class:`Price` events from that field (``None``: price comes from trades, or not at all).
    """

    def __init__(
        self,
        channel: str,
        prices: PriceTracker,
        *,
        emit_tickers: bool,
        price_field: str | None,
        derivatives: DerivativesTracker | None = None,
    ) -> None:
        self.channel = channel
        self.prices = prices
        self.emit_tickers = emit_tickers
        self.price_field = price_field
        #: The "derivatives" stream's state (kept across reconnects), or None.
        self.derivatives = derivatives
        self.state: dict[str, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget merged state: the next message for each symbol must be a snapshot."""
        self.state.clear()

    def forget(self, symbols: set[str]) -> None:
        """``symbols`` are no longer streamed (delisted): nothing of them is kept, their
        derivatives and last price neither."""
        for symbol in symbols:
            self.state.pop(symbol, None)
            self.prices.last.pop(symbol, None)
            if self.derivatives is not None:
                self.derivatives.last.pop(symbol, None)

    def apply(
        self, symbol: str, kind: str, data: dict[str, Any], ts: int, out: list[Event]
    ) -> bool:
        """Merge one tickers message; return False for a delta before any snapshot (dropped)."""
        if kind == "delta":
            fields = self.state.get(symbol)
            if fields is None:
                return False
            fields.update(numeric_fields(data))
        else:
            fields = numeric_fields(data)
            self.state[symbol] = fields
        if self.emit_tickers:
            # A copy: the merged dict keeps changing, the event must not.
            out.append(Ticker(self.channel, symbol, ts, dict(fields)))
        if self.price_field is not None:
            self.prices.update(symbol, fields.get(self.price_field), ts, out)
        if self.derivatives is not None:
            self.derivatives.update(symbol, fields, ts, out)
        return True
