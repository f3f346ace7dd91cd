"""Kline intervals as the configuration writes them ("1m", "4h", "1D"), their length in ms
(what :class:`streamer.Kline` carries) and Bybit's interval codes ("1", "240", "D").

One table for every plugin: the Bybit source subscribes ``kline.<code>.<symbol>``, the
aggregator builds candles of ``ms``, the storage sink names keys by label.
"""

from __future__ import annotations

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
#: Months have no fixed length; Bybit's "M" candles are carried with this nominal length so
#: that the interval stays a stable key.
MONTH_MS = 30 * DAY_MS

#: label -> (length in ms, Bybit code), in increasing length.
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
    "1M": (MONTH_MS, "M"),
}

_LABEL_BY_MS = {ms: label for label, (ms, _) in INTERVALS.items()}
_CODE_BY_MS = {ms: code for ms, code in INTERVALS.values()}
_MS_BY_CODE = {code: ms for ms, code in INTERVALS.values()}


def parse_interval(label: str, *, allow_month: bool = True) -> int:
    """The length in ms of a configured interval; ``ValueError`` naming the valid ones."""
    found = INTERVALS.get(label.strip()) if isinstance(label, str) else None
    if found is None or (not allow_month and label.strip() == "1M"):
        valid = [k for k in INTERVALS if allow_month or k != "1M"]
        raise ValueError(f"unknown kline interval {label!r}; valid intervals: {', '.join(valid)}")
    return found[0]


def interval_label(ms: int) -> str:
    """The configuration label of an interval length ("1m" for 60000)."""
    try:
        return _LABEL_BY_MS[ms]
    except KeyError:
        raise ValueError(f"no kline interval is {ms} ms long") from None


def bybit_code(ms: int) -> str:
    """Bybit's interval code ("1", "60", "D", "W", "M") of an interval length in ms."""
    try:
        return _CODE_BY_MS[ms]
    except KeyError:
        raise ValueError(f"no Bybit interval is {ms} ms long") from None


def interval_of_code(code: str) -> int:
    """The length in ms of Bybit's interval code ("1" -> 60000, "D" -> 86400000)."""
    try:
        return _MS_BY_CODE[code]
    except KeyError:
        raise ValueError(f"unknown Bybit interval code {code!r}") from None
