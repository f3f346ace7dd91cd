"""Kline intervals: parsing "1m".."1W" and aligning timestamps to candle boundaries.

Boundaries are aligned to the UTC epoch, as Bybit aligns its own candles: a 5m candle starts
at a multiple of 300,000 ms, a 1D candle at 00:00 UTC.

Weekly candles: Bybit's 1W candles start on Monday 00:00 UTC (their ``start`` values are
Mondays, e.g. 1704067200000 = Mon 2024-01-01 00:00 UTC). The epoch, 1970-01-01, was a
Thursday, so ``ts - ts % WEEK`` would give Thursday-aligned weeks; the first Monday after the
epoch is 1970-01-05, four days in, so weekly boundaries are ``ts - (ts - 4 days) % WEEK``.
The fake Bybit of the tests (tests/fakebybit/market.py, ``period_start``) aligns "W" the same
way, and tests/aggregate/test_intervals.py checks both agree.
"""

from __future__ import annotations

from streamer.intervals import DAY_MS, HOUR_MS, MINUTE_MS, WEEK_MS, bybit_code
from streamer.intervals import INTERVALS as _ALL_INTERVALS
from streamer.intervals import parse_interval as _parse_interval

#: Offset of weekly boundaries from the epoch: 1970-01-05 (a Monday) minus 1970-01-01.
WEEK_OFFSET_MS = 4 * DAY_MS

#: What the aggregator builds: every interval of the core's table but the month, whose length
#: varies (Bybit's own "M" candles go through klines.passthrough).
INTERVALS: dict[str, tuple[int, str]] = {
    label: spec for label, spec in _ALL_INTERVALS.items() if label != "1M"
}

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "INTERVALS",
    "MINUTE_MS",
    "WEEK_MS",
    "WEEK_OFFSET_MS",
    "alignment_offset",
    "bybit_code",
    "candle_start",
    "next_boundary",
    "parse_interval",
]


def parse_interval(text: str) -> int:
    """The length in ms of an interval written as in the config ("1m", "4h", "1D", "1W")."""
    return _parse_interval(text, allow_month=False)


def alignment_offset(interval_ms: int) -> int:
    """Where boundaries of this interval sit relative to the epoch (non-zero only for 1W)."""
    return WEEK_OFFSET_MS if interval_ms == WEEK_MS else 0


def candle_start(ts_ms: int, interval_ms: int) -> int:
    """Open time of the candle of ``interval_ms`` that holds ``ts_ms``."""
    return ts_ms - (ts_ms - alignment_offset(interval_ms)) % interval_ms


def next_boundary(ts_ms: int, interval_ms: int) -> int:
    """The first boundary of this interval strictly after ``ts_ms``."""
    return candle_start(ts_ms, interval_ms) + interval_ms
