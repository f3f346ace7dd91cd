"""How a first candle's history is merged in, once it came (or did not): the part of
:class:`~streamer_aggregate.aggregator.KlineAggregator` that ends a first candle's wait.
What is exact and what is estimated: :mod:`streamer_aggregate.backfill`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from streamer import Kline, Metrics, Trade
from streamer.history import TradeSummary
from streamer_aggregate.amounts import Amounts
from streamer_aggregate.backfill import BackfillRequest, PendingBackfill, SourceCandle
from streamer_aggregate.candles import Bucket
from streamer_aggregate.dropped_trades import DroppedTrades
from streamer_aggregate.first_candles import WaitingFirstCandles


class BackfillMerge:
    """Mixed into the aggregator: these are its attributes and methods they use."""

    _pending: WaitingFirstCandles
    metrics: Metrics
    amounts: Amounts
    turnover: bool
    _dropped: DroppedTrades
    _fold: Callable[[Bucket, int, float, int, int], None]
    _stop_pending: Callable[[Bucket], None]
    _mark_changed: Callable[[Bucket], list[Kline]]

    def _take_pending(self, request: BackfillRequest) -> tuple[Bucket, PendingBackfill] | None:
        """The first candle of ``request`` and what it kept while waiting; it waits no more.
        ``None`` (counted) if it gave up waiting already."""
        bucket = self._pending.find(request)
        if bucket is None:
            self.metrics.inc("backfill_discarded")
            return None
        pending = bucket.pending
        assert pending is not None
        self._stop_pending(bucket)
        return bucket, pending

    def apply_backfill(self, request: BackfillRequest, candle: SourceCandle | None) -> list[Kline]:
        """Merge the source's candle into the first candle, or mark it partial (``None``);
        what is exact and what is estimated: :mod:`streamer_aggregate.backfill`.

        Returns open klines to emit now (``updates = "every_trade"``), else ``[]``.
        """
        taken = self._take_pending(request)
        if taken is None:
            return []
        bucket, pending = taken
        if candle is not None:
            bucket.merge(candle, pending.before(candle.snapshot_ms), self.amounts)
        return self._backfilled(bucket, candle is not None)

    def apply_trades(
        self, request: BackfillRequest, trades: Sequence[Trade], complete: bool
    ) -> list[Kline]:
        """Fold the source's trades of the first candle stamped before our first one in; if
        not ``complete`` (the source keeps fewer), the candle stays flagged partial."""
        taken = self._take_pending(request)
        if taken is None:
            return []
        bucket, pending = taken
        amounts = self.amounts
        for t in trades:
            if t.ts < pending.first_ts:
                try:
                    v = amounts.size_units(t.size)
                    price_units = amounts.price_units(t.price)
                    p = float(t.price)
                except (ValueError, TypeError) as exc:
                    self._dropped.malformed(t, exc)
                    continue
                self._fold(bucket, t.ts, p, v, price_units * v if self.turnover else 0)
        if not complete:
            self.metrics.inc("backfill_incomplete")
        return self._backfilled(bucket, complete)

    def apply_summary(self, request: BackfillRequest, summary: TradeSummary) -> list[Kline]:
        """Merge a stored history's summary of every trade from the first candle's open to
        our first trade in it: the candle is then exact."""
        taken = self._take_pending(request)
        if taken is None:
            return []
        taken[0].add_summary(summary, self.amounts)
        self.metrics.inc("backfilled_from_store")
        return self._backfilled(taken[0], True)

    def _backfilled(self, bucket: Bucket, complete: bool) -> list[Kline]:
        """The first candle's history is merged (``complete``) or given up (partial)."""
        if complete:
            bucket.backfilled = True
            self.metrics.inc("backfilled_klines")
        else:
            bucket.partial = True
        return self._mark_changed(bucket)
