"""The current order book of every (channel, symbol), kept from the ``book`` wire items, so
that a new client gets each book whole first and then the deltas that follow it.

Each book is rebuilt with :class:`streamer.book.OrderBook`; its snapshot item is the wire
format's ``book`` object with ``kind`` "snapshot" and the ``update_id``, ``ts``, ``seq`` and
``engine_ts`` of the newest item applied, so the next live delta follows it. A delta that
does not follow (this sink's inbox dropped the oldest events) or a crossed result drops the
book (``book_gaps``) until the symbol's next snapshot: a client is never given a wrong book.
"""

from __future__ import annotations

from typing import Any

from streamer import Metrics
from streamer.book import OrderBook

_Item = dict[str, Any]


class BookStore:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        #: (channel, symbol) -> its book and the newest item applied.
        self.books: dict[tuple[str, str], tuple[OrderBook, _Item]] = {}

    def apply(self, channel: str, item: _Item) -> None:
        key = (channel, item["symbol"])
        held = self.books.get(key)
        book = held[0] if held is not None else OrderBook()
        if item["kind"] == "snapshot":
            outcome = book.snapshot(item["bids"], item["asks"], item["update_id"])
        elif held is None:
            return  # no snapshot yet: a client could not use what follows
        else:
            outcome = book.delta(item["bids"], item["asks"], item["update_id"])
        if outcome != "ok":
            self.books.pop(key, None)
            if self.metrics is not None:
                self.metrics.inc("book_gaps")
            return
        self.books[key] = (book, item)

    def item(self, channel: str, symbol: str) -> _Item | None:
        """``symbol``'s book as one snapshot item (None: no exact book held)."""
        held = self.books.get((channel, symbol))
        if held is None:
            return None
        book, last = held
        bids, asks = book.top()
        out: _Item = {"symbol": symbol, "kind": "snapshot", "bids": bids, "asks": asks,
                      "update_id": last["update_id"], "ts": last["ts"]}
        for optional in ("seq", "engine_ts"):
            if optional in last:
                out[optional] = last[optional]
        return out

    def symbols(self, channel: str) -> list[str]:
        return sorted(s for c, s in self.books if c == channel)


__all__ = ["BookStore"]
