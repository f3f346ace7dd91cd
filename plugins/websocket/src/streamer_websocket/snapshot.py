"""The latest ticker, price and kline per symbol, so a new client is never blank."""

from __future__ import annotations

from typing import Any

from streamer_websocket.envelope import Envelope
from streamer_websocket.subscription import Subscription, matches

# The order a snapshot is sent in: what a dashboard shows first.
_SNAPSHOT_TYPES = ("ticker", "price", "klines")


class SnapshotStore:
    """Latest wire item per (channel, data_type, symbol[, kline interval])."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str, str, int | None], dict[str, Any]] = {}

    def update(self, envelopes: list[Envelope]) -> None:
        latest = self._latest
        for env in envelopes:
            if env.data_type == "trades":
                continue  # a trade is history, not state
            channel, data_type = env.key
            for item in env.data:
                latest[(channel, data_type, item["symbol"], item.get("interval"))] = item

    def __len__(self) -> int:
        return len(self._latest)

    def envelopes(self, sub: Subscription | None) -> list[Envelope]:
        """What a client with subscription ``sub`` should see first, grouped into envelopes."""
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for data_type in _SNAPSHOT_TYPES:
            for (channel, dt, symbol, _), item in self._latest.items():
                if dt == data_type and matches(sub, channel, dt, symbol):
                    groups.setdefault((channel, dt), []).append(item)
        return [Envelope(channel, dt, data) for (channel, dt), data in groups.items()]
