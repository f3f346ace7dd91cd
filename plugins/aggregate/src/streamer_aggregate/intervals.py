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

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: Offset of weekly boundaries from the epoch: 1970-01-05 (a Monday) minus 1970-01-01.
WEEK_OFFSET_MS = 4 * DAY_MS

#: Accepted spellings -> (length in ms, Bybit's REST/WebSocket interval code).
INTERVALS: dict[str, tuple[int, str]] = {
    "1m": (MINUTE_MS, "1"),
    "3m": (3 * MINUTE_MS, "3"),
    "5m": (5 * MINUTE_MS, "5"),
    "15m": (15 * MINUTE_MS, "15"),
    "30m": (30 * MINUTE_MS, "30"),
    "1h": (HOUR_MS, "60"),
    "2h": (2 * HOUR_MS, "120"),
    "4h": (4 * HOUR_MS, "240"),
    "6h": (6 * HOUR_MS, "360"),
    "12h": (12 * HOUR_MS, "720"),
    "1D": (DAY_MS, "D"),
    "1W": (WEEK_MS, "W"),
}

_BYBIT_CODE_BY_MS = {ms: code for ms, code in INTERVALS.values()}


def parse_interval(text: str) -> int:
    """The length in ms of an interval written as in the config ("1m", "4h", "1D", "1W")."""
    found = INTERVALS.get(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(
            f"unknown kline interval {text!r}; valid intervals: {', '.join(INTERVALS)}"
        )
    return found[0]


def bybit_code(interval_ms: int) -> str:
    """Bybit's interval code ("1", "60", "D", "W") for an interval length in ms."""
    try:
        return _BYBIT_CODE_BY_MS[interval_ms]
    except KeyError:
        raise ValueError(f"no Bybit interval is {interval_ms} ms long") from None


def alignment_offset(interval_ms: int) -> int:
    """Where boundaries of this interval sit relative to the epoch (non-zero only for 1W)."""
    return WEEK_OFFSET_MS if interval_ms == WEEK_MS else 0


def candle_start(ts_ms: int, interval_ms: int) -> int:
    """Open time of the candle of ``interval_ms`` that holds ``ts_ms``."""
    return ts_ms - (ts_ms - alignment_offset(interval_ms)) % interval_ms


def next_boundary(ts_ms: int, interval_ms: int) -> int:
    """The first boundary of this interval strictly after ``ts_ms``."""
    return candle_start(ts_ms, interval_ms) + interval_ms
