"""The order books the ``storage`` sink keeps: each (channel, symbol) book rebuilt from the
``book`` events (:class:`streamer.book.OrderBook`), its top ``book_depth`` levels written to
``{main_key}:book:{channel}`` (hash, symbol -> JSON) once per flush.

A delta that does not follow the book's last ``update_id`` (a source that lost messages, or
this sink's own buffer dropping the oldest events while Redis was away) or a crossed result
drops the book: its field is deleted (``book_gaps``) and comes back with the symbol's next
snapshot. A stored book is therefore never a wrong one, only a missing one.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.client

from streamer import Book, Metrics
from streamer.book import OrderBook

_encoder = msgspec.json.Encoder()


class _Stored(msgspec.Struct, omit_defaults=True, gc=False):
    """The JSON of one stored book (the wire names of :class:`streamer.Book`; ``seq`` and
    ``engine_ts`` left out when unknown, as on the wire)."""

    symbol: str
    bids: list[list[str]]
    asks: list[list[str]]
    update_id: int
    ts: int
    seq: int | None = None
    engine_ts: int | None = None


class StorageBooks:
    def __init__(self, depth: int, metrics: Metrics) -> None:
        self.depth = depth
        self.metrics = metrics
        self.books: dict[tuple[str, str], OrderBook] = {}
        #: Changed since the last flush: the newest event applied, or None (dropped).
        self._changed: dict[tuple[str, str], Book | None] = {}

    def apply(self, e: Book) -> None:
        key = (e.channel, e.symbol)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = OrderBook()
        if e.kind == "snapshot":
            outcome = book.snapshot(e.bids, e.asks, e.update_id, e.seq)
        elif book.update_id is None:
            return  # no snapshot yet (or dropped): wait for one
        else:
            outcome = book.delta(e.bids, e.asks, e.update_id, e.seq)
        if outcome == "ok":
            self._changed[key] = e
            return
        self.metrics.inc("book_gaps")
        book.reset()
        self._changed[key] = None

    def write(self, pipe: redis.client.Pipeline, key_of: Any) -> None:
        """HSET the top of every book changed since the last flush (HDEL a dropped one)."""
        sets: dict[str, dict[str | bytes, bytes]] = {}
        dels: dict[str, list[str]] = {}
        for (channel, symbol), e in self._changed.items():
            if e is None:
                dels.setdefault(channel, []).append(symbol)
                continue
            bids, asks = self.books[(channel, symbol)].top(self.depth)
            sets.setdefault(channel, {})[symbol] = _encoder.encode(
                _Stored(symbol, bids, asks, e.update_id, e.ts, e.seq, e.engine_ts))
        self._changed.clear()
        for channel, symbols in dels.items():
            pipe.hdel(key_of(channel), *symbols)
        for channel, mapping in sets.items():
            pipe.hset(key_of(channel), mapping=mapping)  # type: ignore[arg-type]


__all__ = ["StorageBooks"]
