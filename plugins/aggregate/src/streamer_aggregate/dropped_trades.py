"""The trades the aggregator drops, each counted, and logged at most once per
``LOG_EVERY_S`` per kind: malformed amounts and late trades (older than a closed candle)."""

from __future__ import annotations

import logging

from streamer import Metrics, RateLimitedLog, Trade
from streamer_aggregate.candles import IntervalState

#: Seconds between two log lines of one kind (the counters count every trade).
LOG_EVERY_S = 10.0


class DroppedTrades:
    """Counts (``malformed_trades``, ``late_trades``) and rate-limited log lines."""

    def __init__(self, metrics: Metrics, log: logging.Logger) -> None:
        self.metrics = metrics
        self._log = RateLimitedLog(log, LOG_EVERY_S)

    def malformed(self, t: Trade, exc: Exception) -> None:
        self.metrics.inc("malformed_trades")
        self._log.warning("malformed", "trade dropped: %s %s %r: %s (counted in "
                          "malformed_trades)", t.channel, t.symbol, t.trade_id, exc)

    def late(self, st: IntervalState, ts: int) -> None:
        self.metrics.inc("late_trades")
        self._log.debug(
            "late", "late trade dropped: %s %s at %d for a closed %d ms kline (closed up to %s)",
            st.channel, st.symbol, ts, st.ms, st.cursor,
        )
