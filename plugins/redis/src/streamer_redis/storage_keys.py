"""Every Redis key the storage sink writes, in one place (docs/plugins/storage.md lists them).

- ``{main_key}:tickers:{channel}``: hash, symbol -> ticker snapshot JSON.
- ``{main_key}:price:{channel}``: hash, symbol -> price as a string.
- ``{interval}`` is the interval label, lower-case by default (``1m``, ``1h``, ``1d``, ``1w``;
  ``key_labels = "config"`` keeps ``1D``, ``1W``): see :func:`key_label`.
- ``{main_key}:last-closed:{channel}:{interval}``: string, JSON list of the last closed kline
  of every symbol, PX = the interval in ms.
- ``{main_key}:history:{channel}:{interval}:{symbol}``: list of closed kline JSON, oldest
  first, trimmed to ``history`` entries.
"""

from __future__ import annotations

import re

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def key_label(label: str, style: str = "lower") -> str:
    """An interval label as the keys carry it. ``"lower"``: the older Bybit streamer's
    lower-case labels (``1d``, ``1w``), so its readers keep working; the month stays ``1M``
    (lower-case it would be a minute). ``"config"``: as configured (``1D``)."""
    if style == "lower" and label != "1M":
        return label.lower()
    return label


class StorageKeys:
    def __init__(self, main_key: str) -> None:
        self.main_key = main_key

    def tickers(self, channel: str) -> str:
        return f"{self.main_key}:tickers:{channel}"

    def price(self, channel: str) -> str:
        return f"{self.main_key}:price:{channel}"

    def last_closed(self, channel: str, interval: str) -> str:
        return f"{self.main_key}:last-closed:{channel}:{interval}"

    def history(self, channel: str, interval: str, symbol: str) -> str:
        return f"{self.main_key}:history:{channel}:{interval}:{symbol}"

    def history_pattern(self, channel: str, interval: str) -> str:
        """MATCH pattern of the history keys of one channel and interval, and nothing else."""
        return f"{glob_escape(self.main_key)}:history:{channel}:{interval}:*"
