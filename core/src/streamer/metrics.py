"""Named counters (malformed messages, drops, late trades, reconnects, ...).

Plain integer adds on a dict: cheap enough to bump per batch. Never bump per event in a hot
loop when a per-batch ``add`` will do.
"""

from __future__ import annotations

from collections import Counter


class Metrics:
    """Counters of one pipeline node, keyed by a short name such as ``"malformed"``."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def inc(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)
