"""Kline intervals: the labels the configuration writes ("500ms", "1m", "4h", "1D", "2M"),
their length in ms (what :class:`streamer.Kline` carries on the wire) and candle boundaries.

One table for every plugin: the aggregator builds candles of any interval, the storage sink
names keys by label, a source maps the labels onto its exchange's own interval codes (the
Bybit plugin's ``streamer_bybit.intervals``).

Labels: ``<n><unit>`` with a whole ``n >= 1`` and a unit of ``ms``, ``s``, ``m`` (minute),
``h``, ``D``, ``W`` or ``M`` (calendar month), from 100 ms up to 366 days or 12 months. Each
length has exactly one label, written in its largest whole unit ("1h", not "60m"; "90s",
"2W"), so that the wire ``interval`` (ms) and the label (storage keys) map one to one.

Boundaries are aligned to the UTC epoch, as Bybit aligns its own candles: a 5m candle starts
at a multiple of 300,000 ms, a 1D candle at 00:00 UTC, a 10s candle at a multiple of 10 s.

Weeks: Bybit's 1W candles start on Monday 00:00 UTC (their ``start`` values are Mondays, e.g.
1704067200000 = Mon 2024-01-01 00:00 UTC). The epoch, 1970-01-01, was a Thursday, so
``ts - ts % WEEK`` would give Thursday-aligned weeks; the first Monday after the epoch is
1970-01-05, four days in, so boundaries of every whole number of weeks are
``ts - (ts - 4 days) % length``. The fake Bybit of the tests aligns "W" the same way, and
tests/aggregate/test_config_intervals.py checks both agree.

Months: candles start on the first of a calendar month, 00:00 UTC; an ``nM`` candle starts on
a month whose index since January 1970 is a multiple of ``n`` (2M: January, March, ...).
Their length varies, so on the wire a month is carried with the *nominal* length
``n * 30 days`` (:data:`MONTH_MS`), a stable key and nothing more: the candle's real end is the
next calendar boundary. No fixed interval may have a nominal month's length (``30D`` is
refused: it would share the wire ``interval`` of ``1M``).
"""

from __future__ import annotations

import datetime as _dt
import re

import attrs

SECOND_MS = 1000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: Months have no fixed length; a month interval is carried with ``n * MONTH_MS`` (nominal)
#: so that the interval stays a stable key.
MONTH_MS = 30 * DAY_MS
#: Offset of weekly boundaries from the epoch: 1970-01-05 (a Monday) minus 1970-01-01.
WEEK_OFFSET_MS = 4 * DAY_MS

#: Shortest and longest interval accepted.
MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 366 * DAY_MS
MAX_MONTHS = 12

#: The usual candle lengths, label -> length in ms, in increasing length: those exchanges
#: commonly offer (the storage sink's default intervals are these but 1M).
INTERVALS: dict[str, int] = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "2h": 2 * HOUR_MS,
    "4h": 4 * HOUR_MS,
    "6h": 6 * HOUR_MS,
    "12h": 12 * HOUR_MS,
    "1D": DAY_MS,
    "1W": WEEK_MS,
    "1M": MONTH_MS,
}

#: Fixed units, largest first (months are handled apart).
_UNITS: tuple[tuple[str, int], ...] = (
    ("W", WEEK_MS), ("D", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", SECOND_MS),
    ("ms", 1),
)
_UNIT_MS = dict(_UNITS)
_LABEL = re.compile(r"([1-9][0-9]{0,9})(ms|s|m|h|D|W|M)")
_VALID = (
    "1m, 5m, 1h, 1D, 1W, 1M, or any <n><unit> from 100ms to 366D (12M) written in its largest "
    "whole unit (unit: ms, s, m, h, D, W, M; e.g. 500ms, 10s, 50m, 2h, 2M)"
)


@attrs.frozen
class Interval:
    """One candle length: its canonical label, its wire length (ms) and its boundaries."""

    label: str
    #: Length in ms; for months the nominal ``months * MONTH_MS``.
    ms: int
    #: Calendar months per candle, 0 for a fixed length.
    months: int = 0
    #: Where fixed boundaries sit relative to the epoch (non-zero for whole weeks).
    offset: int = 0

    def start(self, ts_ms: int) -> int:
        """Open time of the candle that holds ``ts_ms``."""
        if not self.months:
            return ts_ms - (ts_ms - self.offset) % self.ms
        index = _month_index(ts_ms)
        return _month_start(index - index % self.months)

    def end(self, start_ms: int) -> int:
        """Open time of the candle after the one opening at ``start_ms`` (its exclusive end)."""
        if not self.months:
            return start_ms + self.ms
        return _month_start(_month_index(start_ms) + self.months)

    def next_boundary(self, ts_ms: int) -> int:
        """The first boundary strictly after ``ts_ms``."""
        return self.end(self.start(ts_ms))

    def divides(self, other: Interval) -> bool:
        """Whether every boundary of ``other`` is a boundary of this interval, so that
        ``other``'s candles are unions of whole candles of this one."""
        if other.months:
            if self.months:
                return other.months % self.months == 0
            return DAY_MS % self.ms == 0 and self.offset == 0
        if self.months:
            return False
        return other.ms % self.ms == 0 and (other.offset - self.offset) % self.ms == 0


def _month_index(ts_ms: int) -> int:
    d = _dt.datetime.fromtimestamp(ts_ms // 1000, tz=_dt.timezone.utc)
    return (d.year - 1970) * 12 + d.month - 1


def _month_start(index: int) -> int:
    year, month = divmod(index, 12)
    start = _dt.datetime(1970 + year, month + 1, 1, tzinfo=_dt.timezone.utc)
    return int(start.timestamp()) * 1000


def _fixed(ms: int) -> Interval:
    label = next(f"{ms // size}{unit}" for unit, size in _UNITS if ms % size == 0)
    return Interval(label, ms, 0, WEEK_OFFSET_MS if ms % WEEK_MS == 0 else 0)


def interval(label: str, *, allow_month: bool = True) -> Interval:
    """The :class:`Interval` of a configured label; ``ValueError`` saying what is valid."""
    text = label.strip() if isinstance(label, str) else ""
    found, why = _interval(text, allow_month)
    if found is None:
        valid = _VALID if allow_month else _VALID.replace(", 1M", "").replace(" (12M)", "")
        raise ValueError(f"unknown kline interval {label!r}; valid intervals: {valid}"
                         + (f" ({why})" if why else ""))
    return found


def _interval(text: str, allow_month: bool) -> tuple[Interval | None, str]:
    match = _LABEL.fullmatch(text)
    if match is None:
        return None, ""
    n, unit = int(match[1]), match[2]
    if unit == "M":
        if not allow_month:
            return None, "calendar months are not available here"
        if n > MAX_MONTHS:
            return None, f"at most {MAX_MONTHS}M"
        return Interval(text, n * MONTH_MS, n), ""
    ms = n * _UNIT_MS[unit]
    if not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
        return None, "out of range"
    if ms % MONTH_MS == 0:
        months = ms // MONTH_MS
        return None, (f"{text} would carry the wire interval of {months}M, its nominal "
                      f"length; write {months}M for calendar months")
    found = _fixed(ms)
    if found.label != text:
        return None, f"write {text} as {found.label}: one label per length"
    return found, ""


def parse_interval(label: str, *, allow_month: bool = True) -> int:
    """The length in ms of a configured interval; ``ValueError`` saying what is valid."""
    return interval(label, allow_month=allow_month).ms


def interval_of_ms(ms: int) -> Interval:
    """The :class:`Interval` whose wire length is ``ms`` (months by their nominal length)."""
    if isinstance(ms, int) and ms > 0 and ms % MONTH_MS == 0 and ms // MONTH_MS <= MAX_MONTHS:
        n = ms // MONTH_MS
        return Interval(f"{n}M", ms, n)
    if not isinstance(ms, int) or not MIN_INTERVAL_MS <= ms <= MAX_INTERVAL_MS:
        raise ValueError(f"no kline interval is {ms} ms long")
    return _fixed(ms)


def interval_label(ms: int) -> str:
    """The configuration label of an interval length ("1m" for 60000, "90s" for 90000)."""
    return interval_of_ms(ms).label


def candle_start(ts_ms: int, interval_ms: int) -> int:
    """Open time of the candle of ``interval_ms`` that holds ``ts_ms``."""
    return interval_of_ms(interval_ms).start(ts_ms)


def next_boundary(ts_ms: int, interval_ms: int) -> int:
    """The first boundary of this interval strictly after ``ts_ms``."""
    return interval_of_ms(interval_ms).next_boundary(ts_ms)
