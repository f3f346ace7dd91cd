"""Bybit's interval codes ("1", "240", "D") for the core's interval labels and lengths.

The Bybit source subscribes ``kline.<code>.<symbol>``, its history asks
``/v5/market/kline?interval=<code>``, and its decoder reads the code back into a length.
"""

from __future__ import annotations

from typing import Final

from streamer.intervals import INTERVALS

#: The intervals Bybit has, label -> Bybit code (the labels of ``streamer.intervals.INTERVALS``).
CODES: Final[dict[str, str]] = {
    "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120",
    "4h": "240", "6h": "360", "12h": "720", "1D": "D", "1W": "W", "1M": "M",
}
_CODE_BY_MS: Final[dict[int, str]] = {INTERVALS[label]: code for label, code in CODES.items()}
#: Bybit code -> interval length in ms.
MS_BY_CODE: Final[dict[str, int]] = {code: ms for ms, code in _CODE_BY_MS.items()}


def bybit_code(ms: int) -> str:
    """Bybit's interval code ("1", "60", "D", "W", "M") of an interval length in ms."""
    try:
        return _CODE_BY_MS[ms]
    except KeyError:
        raise ValueError(f"no Bybit interval is {ms} ms long") from None


def interval_of_code(code: str) -> int:
    """The length in ms of Bybit's interval code ("1" -> 60000, "D" -> 86400000)."""
    try:
        return MS_BY_CODE[code]
    except KeyError:
        raise ValueError(f"unknown Bybit interval code {code!r}") from None
