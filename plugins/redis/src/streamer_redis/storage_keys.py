"""Every Redis key the storage sink writes, in one place (docs/plugins/storage.md lists them).

- ``{main_key}:tickers:{channel}``: hash, symbol -> ticker snapshot JSON.
- ``{main_key}:price:{channel}``: hash, symbol -> price as a string.
- ``{main_key}:book:{channel}``: hash, symbol -> JSON of its order book's top levels.
- ``{main_key}:last-closed:{channel}:{interval}``: string, JSON list of the last closed kline
  of every symbol, PX = :func:`last_closed_ttl_ms`.
- ``{main_key}:history:{channel}:{interval}:{symbol}``: list of closed kline JSON, oldest
  first, trimmed to ``history`` entries.

``{interval}`` is the interval's label (``streamer.intervals``: "500ms", "10s", "1m", "2h",
"1D", "2W", "1M"), lower-case by default as the older Bybit streamer wrote it (``1d``, ``1w``;
months stay ``1M``), as configured with ``key_labels = "config"``: see :func:`key_label`.
Labels are letters and digits only, so never a glob character.
"""

from __future__ import annotations

import re

from streamer.intervals import DAY_MS, interval_of_ms

#: The shortest PX of a last-closed key: a sub-second interval's key must outlive the time
#: between the sink's flushes.
MIN_LAST_CLOSED_TTL_MS = 2_000

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def last_closed_ttl_ms(interval_ms: int) -> int:
    """PX of a last-closed key: one interval at its longest (a calendar month up to 31 days,
    though its wire length is a nominal 30), and at least :data:`MIN_LAST_CLOSED_TTL_MS`."""
    months = interval_of_ms(interval_ms).months
    longest = months * 31 * DAY_MS if months else interval_ms
    return max(longest, MIN_LAST_CLOSED_TTL_MS)


def key_label(label: str, style: str = "lower") -> str:
    """An interval label as the keys carry it. ``"lower"``: the older Bybit streamer's
    lower-case labels (``1d``, ``1w``), so its readers keep working; months stay ``1M``,
    ``2M`` (lower-case they would be minutes). ``"config"``: as configured (``1D``)."""
    if style == "lower" and not label.endswith("M"):
        return label.lower()
    return label


class StorageKeys:
    def __init__(self, main_key: str) -> None:
        self.main_key = main_key

    def tickers(self, channel: str) -> str:
        return f"{self.main_key}:tickers:{channel}"

    def price(self, channel: str) -> str:
        return f"{self.main_key}:price:{channel}"

    def book(self, channel: str) -> str:
        return f"{self.main_key}:book:{channel}"

    def last_closed(self, channel: str, interval: str) -> str:
        return f"{self.main_key}:last-closed:{channel}:{interval}"

    def history(self, channel: str, interval: str, symbol: str) -> str:
        return f"{self.main_key}:history:{channel}:{interval}:{symbol}"

    def history_pattern(self, channel: str, interval: str) -> str:
        """MATCH pattern of the history keys of one channel and interval, and nothing else."""
        return f"{glob_escape(self.main_key)}:history:{channel}:{interval}:*"
