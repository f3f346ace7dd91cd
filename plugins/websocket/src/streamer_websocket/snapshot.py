"""The latest ticker, price and kline per symbol, and every order book, so a new client is
never blank (a book is sent whole, then its live deltas follow: book_store.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from streamer_websocket.book_store import BookStore
from streamer_websocket.client import SHORT_SYMBOL_KEY, project
from streamer_websocket.envelope import Envelope
from streamer_websocket.subscription import Subscription

# The order a snapshot is sent in: what a dashboard shows first.
_SNAPSHOT_TYPES = ("ticker", "price", "klines", "book")
#: Items per snapshot envelope: a client's queue holds envelopes, and a bounded envelope keeps
#: what one queued snapshot envelope pins per client bounded too.
SNAPSHOT_CHUNK = 500

_Item = dict[str, Any]


class SnapshotStore:
    """Latest wire item per (channel, data_type) -> symbol -> kline interval (or None)."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], dict[str, dict[int | None, _Item]]] = {}
        #: The channels seen, in name order: a snapshot lists them so.
        self._channels: list[str] = []
        self._size = 0
        self.books = BookStore()

    def update(self, envelopes: list[Envelope]) -> None:
        latest = self._latest
        for env in envelopes:
            if env.data_type in SHORT_SYMBOL_KEY:
                continue  # a trade or a liquidation is history, not state
            if env.data_type == "book":
                if env.channel not in self._channels:
                    self._channels = sorted([*self._channels, env.channel])
                for item in env.data:
                    self.books.apply(env.channel, item)
                continue
            by_symbol = latest.get(env.key)
            if by_symbol is None:
                by_symbol = latest[env.key] = {}
                if env.channel not in self._channels:
                    self._channels = sorted([*self._channels, env.channel])
            for item in env.data:
                symbol = item["symbol"]
                per_interval = by_symbol.get(symbol)
                if per_interval is None:
                    per_interval = by_symbol[symbol] = {}
                interval = item.get("interval")
                if interval not in per_interval:
                    self._size += 1
                per_interval[interval] = item

    def __len__(self) -> int:
        return self._size

    def envelopes(self, sub: Subscription | None,
                  fields: Mapping[str, frozenset[str]] | None = None) -> list[Envelope]:
        """What a client with subscription ``sub`` should see first, grouped into envelopes,
        each item cut to the ``fields`` of its data type (default: ``sub``'s; a client's
        own, when ``sub`` is the subscription of one request of it).

        Costs time in proportion to what is selected (or to the symbols ``sub`` names), not
        to the whole store.
        """
        if fields is None:
            fields = {} if sub is None else sub.fields
        out: list[Envelope] = []
        for data_type in _SNAPSHOT_TYPES:
            for channel in self._channels:
                key = (channel, data_type)
                if data_type == "book":
                    books = self._book_envelopes(channel, sub)
                    if "book" in fields:
                        books = [Envelope(channel, "book", project(env.data, fields["book"]))
                                 for env in books]
                    out += books
                    continue
                by_symbol = self._latest.get(key)
                if not by_symbol or (sub is not None and key not in sub):
                    continue
                symbols = None if sub is None else sub.symbols(key)
                selected: Iterable[dict[int | None, _Item]]
                if symbols is None:
                    selected = by_symbol.values()
                else:
                    selected = [by_symbol[s] for s in sorted(symbols) if s in by_symbol]
                items = [item for per_interval in selected for item in per_interval.values()]
                if data_type in fields:
                    items = project(items, fields[data_type])
                for start in range(0, len(items), SNAPSHOT_CHUNK):
                    out.append(Envelope(channel, data_type, items[start:start + SNAPSHOT_CHUNK]))
        return out

    def _book_envelopes(self, channel: str, sub: Subscription | None) -> list[Envelope]:
        key = (channel, "book")
        if sub is not None and key not in sub:
            return []
        symbols = None if sub is None else sub.symbols(key)
        names = self.books.symbols(channel) if symbols is None else sorted(symbols)
        items = [i for i in (self.books.item(channel, s) for s in names) if i is not None]
        # One book per envelope: a deep book is large; the client's coalescing joins them up
        # to its message size limit.
        return [Envelope(channel, "book", [item]) for item in items]
