"""Kline interval labels as they appear in keys: ``1m``, ``15m``, ``1h``, ``4h``, ``1D``, ``1W``.

Kline events carry the interval in ms; keys carry the label the older streamer used. The
label of an interval is its largest whole unit: 60000 -> ``1m``, 3600000 -> ``1h``, 7200000
-> ``2h``, 86400000 -> ``1D``, 604800000 -> ``1W``; 90000 -> ``90s``. Months have no fixed
length in ms, so ``1M`` is not accepted.
"""

from __future__ import annotations

import re

_UNITS: tuple[tuple[str, int], ...] = (
    ("W", 604_800_000),
    ("D", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
)
_UNIT_MS = dict(_UNITS)
_UNIT_MS.update({"d": _UNIT_MS["D"], "w": _UNIT_MS["W"]})
_LABEL = re.compile(r"(\d+)(s|m|h|d|D|w|W)")

#: Bybit's kline intervals (without the month), the default set a storage sink keeps.
STANDARD_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1D", "1W")


def interval_label(ms: int) -> str:
    """The key label of an interval given in ms."""
    if ms <= 0:
        raise ValueError(f"interval must be > 0 ms, got {ms}")
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_interval(label: str) -> int:
    """ms of a label such as ``1m``, ``60m``, ``1h``, ``1D`` (``d``/``w`` accepted too)."""
    match = _LABEL.fullmatch(label)
    if match is None or int(match.group(1)) == 0:
        hint = " (months have no fixed length)" if label.endswith("M") else ""
        raise ValueError(
            f"interval {label!r} is not a positive number followed by s, m, h, D or W{hint}"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]
