"""The history of a ``bybit.linear`` / ``bybit.spot`` stream (:mod:`streamer.history`).

Answers with the source's own :class:`~streamer_bybit.rest.BybitRest`, so the same
``rest_url`` / ``testnet``, ``ca_file`` and timeout as symbol loading and gap recovery:
candles from GET /v5/market/kline (Bybit's intervals only, at most 1000 rows per call),
trades from GET /v5/market/recent-trade (the newest 1000 linear / 60 spot trades).

Requests are limited like gap recovery's: at most :data:`CONCURRENCY` in flight, started at
most every :data:`START_INTERVAL_S` (100/s keeps well under Bybit's 600 requests per 5 s per
IP with gap recovery and symbol loading sharing the budget).
"""

from __future__ import annotations

import math
from typing import Any, Final

import trio

from streamer.history import (
    Candles,
    HistoryCandle,
    HistoryError,
    HistoryUnavailable,
    RecentTrades,
)
from streamer.intervals import interval_label
from streamer_bybit.intervals import MS_BY_CODE, bybit_code
from streamer_bybit.recovery import REST_ERRORS, describe, trade_from_rest
from streamer_bybit.rest import RECENT_TRADES_MAX, BybitRest

CONCURRENCY: Final = 8
START_INTERVAL_S: Final = 0.01
#: Bybit's most kline rows per request.
MAX_KLINE_ROWS: Final = 1000


class BybitHistory:
    """:class:`streamer.history.History` of one Bybit category."""

    candle_intervals: frozenset[int] = frozenset(MS_BY_CODE.values())
    max_candles: int = MAX_KLINE_ROWS

    def __init__(self, rest: BybitRest, channel: str) -> None:
        self.rest = rest
        self.channel = channel
        self._limiter = trio.CapacityLimiter(CONCURRENCY)
        self._next_start = 0.0

    async def _paced(self) -> None:
        now = trio.current_time()
        at = max(now, self._next_start)
        self._next_start = at + START_INTERVAL_S
        if at > now:
            await trio.sleep_until(at)

    def _check_channel(self, channel: str) -> None:
        if channel != self.channel:
            raise HistoryUnavailable(f"this source streams {self.channel!r}, not {channel!r}")

    async def candles(
        self, channel: str, symbol: str, interval_ms: int, start_ms: int, *, limit: int
    ) -> Candles:
        self._check_channel(channel)
        try:
            code = bybit_code(interval_ms)
        except ValueError:
            raise HistoryUnavailable(
                f"Bybit has no {interval_label(interval_ms)} klines") from None
        limit = max(1, min(limit, MAX_KLINE_ROWS))
        async with self._limiter:
            await self._paced()
            try:
                rows, snapshot = await self.rest.klines(
                    channel, symbol, code, start=start_ms, limit=limit)
            except REST_ERRORS as exc:
                raise HistoryError(f"GET /v5/market/kline: {type(exc).__name__}: {exc}") from exc
        try:
            candles = [_candle(r) for r in rows]
        except Exception as exc:  # any: a malformed answer is a failed request, never more
            raise HistoryError(f"GET /v5/market/kline: malformed row: {describe(exc)}"
                               ) from exc
        candles.sort(key=lambda c: c.start)
        return Candles(interval_ms, tuple(c for c in candles if c.start >= start_ms), snapshot)

    async def trades_since(self, channel: str, symbol: str, since_ms: int) -> RecentTrades:
        self._check_channel(channel)
        cap = RECENT_TRADES_MAX.get(channel, 60)
        async with self._limiter:
            await self._paced()
            try:
                rows = await self.rest.recent_trades(channel, symbol, cap)
            except REST_ERRORS as exc:
                raise HistoryError(
                    f"GET /v5/market/recent-trade: {type(exc).__name__}: {exc}") from exc
        try:
            trades = sorted((trade_from_rest(channel, row) for row in rows), key=lambda t: t.ts)
        except Exception as exc:  # any, as above
            raise HistoryError(f"GET /v5/market/recent-trade: malformed row: {describe(exc)}"
                               ) from exc
        # Fewer rows than asked: Bybit has no older trades. Otherwise complete only if the
        # oldest row is already before since_ms.
        complete = len(rows) < cap or (bool(trades) and trades[0].ts < since_ms)
        return RecentTrades(tuple(t for t in trades if t.ts >= since_ms), complete)


def _candle(row: Any) -> HistoryCandle:
    """A kline row ``[start, open, high, low, close, volume, turnover]`` of strings."""
    if not isinstance(row, list) or len(row) < 7 or not all(isinstance(f, str) for f in row):
        raise ValueError(f"a kline row is not 7 strings: a {type(row).__name__}")
    numbers = [float(f) for f in row[1:7]]
    if not all(math.isfinite(n) for n in numbers):
        raise ValueError(f"kline row {row[0]!r}: a value that is not a finite number")
    return HistoryCandle(int(row[0]), *numbers)
