"""``books.top``: the top ``depth`` levels of each symbol's order book, at most every
``interval_ms``.

It rebuilds each (channel, symbol) book from the :class:`streamer.Book` events of its inputs
(:class:`streamer.book.OrderBook`: a snapshot replaces the book, a delta must follow the
previous update id) and emits a ``snapshot`` :class:`streamer.Book` of the best ``depth``
levels a side. A book that changed is emitted at once when its last emit is ``interval_ms``
old or more, else when that much has passed (the transform's timer), so a consumer sees every
book's latest top within ``interval_ms``. Knows no exchange: only the events.

A book stops being emitted the moment it cannot be exact: a delta that does not follow
(``book_top_gaps``), or a book gap its source reports (a :class:`streamer.StreamGap` with
``data_type = "book"``); it starts again with the next snapshot. A symbol whose stream ended
(a gap with ``ended``: delisted) is forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import trio

from streamer import Book, Context, Emit, Event, StreamGap
from streamer.book import OrderBook
from streamer_aggregate.config import BooksTopConfig


class _Tracked:
    __slots__ = ("book", "dirty", "last", "latest")

    def __init__(self) -> None:
        self.book = OrderBook()
        #: Changed since its last top was emitted.
        self.dirty = False
        #: trio time of its last top emitted.
        self.last = -math.inf
        #: The newest event applied (its ids and times go into the top).
        self.latest: Book | None = None


class BooksTop:
    def __init__(self, config: BooksTopConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.interval = config.interval_ms / 1000.0
        self.books: dict[tuple[str, str], _Tracked] = {}
        self._wake = trio.Event()

    def _top(self, t: _Tracked) -> Book:
        bids, asks = t.book.top(self.config.depth)
        e = t.latest
        assert e is not None
        t.dirty = False
        t.last = trio.current_time()
        return Book(e.channel, e.symbol, "snapshot", bids, asks, e.update_id, e.ts, e.seq,
                    e.engine_ts)

    def process(self, batch: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        now = trio.current_time()
        interval = self.interval
        changed: list[_Tracked] = []
        for e in batch:
            if e.__class__ is not Book:
                continue
            assert isinstance(e, Book)
            key = (e.channel, e.symbol)
            t = self.books.get(key)
            if t is None:
                t = self.books[key] = _Tracked()
            if e.kind == "snapshot":
                outcome = t.book.snapshot(e.bids, e.asks, e.update_id, e.seq)
            else:
                if t.book.update_id is None:  # no snapshot yet, or dropped: wait for one
                    continue
                outcome = t.book.delta(e.bids, e.asks, e.update_id, e.seq)
            if outcome != "ok":
                self.context.metrics.inc("book_top_gaps" if outcome == "gap"
                                         else "book_top_crossed")
                t.book.reset()
                t.dirty = False
                continue
            t.latest = e
            if not t.dirty:
                t.dirty = True
                changed.append(t)
        for t in changed:
            if now - t.last >= interval:
                out.append(self._top(t))
            else:
                self._wake.set()
        return out

    def on_gap(self, gap: StreamGap) -> list[Event]:
        """A source's book gap: its books stop until their next snapshot. A stream that
        ended (delisted): its top not emitted yet goes now, and its book is forgotten."""
        if gap.ended:
            out: list[Event] = []
            for symbol in gap.symbols:
                t = self.books.pop((gap.channel, symbol), None)
                if t is not None and t.dirty:
                    out.append(self._top(t))
            return out
        if gap.data_type == "book" and not gap.closed:
            for symbol in gap.symbols:
                t = self.books.get((gap.channel, symbol))
                if t is not None:
                    t.book.reset()
                    t.dirty = False
        return []

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Emit each book that changed within ``interval_ms`` of its last top, once due."""
        task_status.started()
        while True:
            due = min((t.last + self.interval for t in self.books.values() if t.dirty),
                      default=math.inf)
            with trio.move_on_at(due):
                await self._wake.wait()  # a book became due sooner than ``due``, maybe
            self._wake = trio.Event()
            now = trio.current_time()
            out: list[Event] = [self._top(t) for t in self.books.values()
                                if t.dirty and now - t.last >= self.interval]
            if out:
                await emit(out)


__all__ = ["BooksTop"]
