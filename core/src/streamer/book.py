"""One order book (bids and asks, price-ordered) and how a snapshot or a delta changes it.

Pure and synchronous: no I/O, no clock, no exchange. A source checks its exchange's book
messages with it (what :meth:`OrderBook.snapshot` and :meth:`OrderBook.delta` return says
whether a message may go downstream); a transform or a consumer rebuilds a book from
:class:`streamer.Book` events with it.

Levels are keyed by the price's number (``float``), not its text, so ``"100"`` and ``"100.0"``
are one level; each level keeps the price and size strings exactly as Bybit sent them. The
order is kept in a sorted list of keys (bids negated, so both sides list best first): a
book holds at most 1,000 levels a side, and an insert or delete is one ``bisect`` plus a
list move of at most that many pointers (a size change touches the map only). A message's
side is applied in one loop (:meth:`BookSide.apply`), a snapshot's side is put in the map
and its keys sorted once (:meth:`BookSide.replace`), and the crossed and depth checks read
the two best keys and the two lengths: the book path of every message is this module.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from typing import Final, Literal

#: What applying a message did to the book.
Outcome = Literal["ok", "gap", "crossed", "overfull"]

ZERO: Final = 0.0
INF: Final = float("inf")


class BookSide:
    """One side: price key -> ``(price, size)`` as sent, and the keys best first.

    Levels are tuples of two strings, not lists: the garbage collector stops tracking such a
    tuple once it has seen it, so a full collection does not walk every level of every book
    (600 books of 1,000 levels a side: a full collection took 138 ms with lists, 21 ms with
    tuples, in one process on the 2-core VM).

    The dict is rebuilt (compacted) once the levels deleted since it was built pass a quarter
    of those it holds (and 128): a dict never reuses the slot of a deleted key, so a side
    whose prices come and go fills its table with deleted slots, and CPython then resizes it
    to three times the levels held, twice the table a fresh dict of those levels has (at
    1,000 levels, 72 KiB instead of 36 KiB a side: 44 MB more for 600 books, all reached
    some 3 minutes after their snapshots). Compacted, the table of a side of 200 levels or
    more stays the fresh size, for one copy of the side per quarter of it deleted (smaller
    sides, whose tables are small anyway, are copied every 128 deletes)."""

    __slots__ = ("_deleted", "_keys", "_levels", "_sign")

    def __init__(self, *, bids: bool) -> None:
        #: -1 for bids (best = highest price first), 1 for asks (lowest first).
        self._sign = -1.0 if bids else 1.0
        self._levels: dict[float, tuple[str, str]] = {}
        self._keys: list[float] = []
        #: Levels deleted since ``_levels`` was built or compacted (its deleted slots).
        self._deleted = 0

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._levels.clear()
        self._keys.clear()
        self._deleted = 0

    def set(self, price: str, size: str) -> None:
        """Insert, replace (any size but zero) or delete (size zero) the level at ``price``.
        ValueError when price or size is not a finite number, or negative."""
        self.apply(((price, size),))

    def apply(self, levels: Iterable[Sequence[str]]) -> None:
        """:meth:`set` each ``[price, size]`` of ``levels`` in order (one call a message
        side: the loop is the hot path of every book message). ValueError as :meth:`set`;
        the levels before the bad one stay applied."""
        sign = self._sign
        book = self._levels
        keys = self._keys
        for price, size in levels:
            # The parse and check below are repeated in replace(), not shared: a function
            # call per level is a measurable share of this loop (bench_books_instructions).
            p = float(price)
            # "0" is how Bybit deletes; any other size is read as a number (and checked)
            s = ZERO if size == "0" else float(size)
            if not (ZERO < p < INF) or not (ZERO <= s < INF):
                raise ValueError(f"level [{price!r}, {size!r}] is not a positive price and "
                                 "a size of 0 or more")
            key = p * sign
            if s == ZERO:
                if book.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
                    self._deleted += 1
                    if self._deleted > max(len(keys) >> 2, 128):  # compact: see the class doc
                        self._deleted = 0
                        book = self._levels = dict(book)
            else:
                if key not in book:
                    insort(keys, key)
                book[key] = (price, size)

    def replace(self, levels: Iterable[Sequence[str]]) -> None:
        """Replace the side whole with ``levels`` (a snapshot's side): the levels go into
        the map as :meth:`apply` would set them one by one, and the keys are sorted once.
        ValueError as :meth:`set` (the side is then empty)."""
        sign = self._sign
        book = self._levels
        book.clear()  # frees the table: a fresh one, no deleted slots
        self._deleted = 0
        try:
            for price, size in levels:
                p = float(price)
                s = ZERO if size == "0" else float(size)
                if not (ZERO < p < INF) or not (ZERO <= s < INF):
                    raise ValueError(f"level [{price!r}, {size!r}] is not a positive price "
                                     "and a size of 0 or more")
                if s == ZERO:
                    book.pop(p * sign, None)
                else:
                    book[p * sign] = (price, size)
        except BaseException:
            book.clear()
            self._keys = []
            raise
        self._keys = sorted(book)

    def best(self) -> float | None:
        """The best price (highest bid, lowest ask), or None when the side is empty."""
        return self._keys[0] * self._sign if self._keys else None

    def levels(self, n: int | None = None) -> list[list[str]]:
        """The ``n`` best levels (all with None), best first, as ``[price, size]`` strings."""
        keys = self._keys if n is None else self._keys[:n]
        levels = self._levels
        return [list(levels[k]) for k in keys]


class OrderBook:
    """One symbol's book as the messages made it; ``update_id`` is the last ``u`` applied
    (None: no snapshot yet, the book is not usable)."""

    __slots__ = ("asks", "bids", "seq", "update_id")

    def __init__(self) -> None:
        self.bids = BookSide(bids=True)
        self.asks = BookSide(bids=False)
        self.update_id: int | None = None
        self.seq: int | None = None

    def reset(self) -> None:
        """Forget every level: the book waits for a snapshot."""
        self.bids.clear()
        self.asks.clear()
        self.update_id = None
        self.seq = None

    def snapshot(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]],
                 update_id: int, seq: int | None = None, depth: int | None = None) -> Outcome:
        """Replace the book whole (never merged with what it held); "crossed" when the
        result has best bid >= best ask, else "overfull" when ``depth`` is given and a side
        holds more levels than it. ValueError on a level that is no number (the book is then
        empty and waits for a snapshot)."""
        try:
            self.bids.replace(bids)
            self.asks.replace(asks)
        except (ValueError, TypeError):
            self.reset()
            raise
        self.update_id = update_id
        self.seq = seq
        return self._check(depth)

    def delta(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]],
              update_id: int, seq: int | None = None, depth: int | None = None) -> Outcome:
        """Apply a delta: "gap" (the book unchanged) when there is no book or ``update_id``
        is not the last one + 1; "crossed" when the result has best bid >= best ask, else
        "overfull" when ``depth`` is given and a side holds more levels than it (the book is
        then applied, and must be dropped by the caller). ValueError on a level that is no
        number (the book may be half applied: the caller drops it)."""
        last = self.update_id
        if last is None or update_id != last + 1:
            return "gap"
        if bids:
            self.bids.apply(bids)
        if asks:
            self.asks.apply(asks)
        self.update_id = update_id
        self.seq = seq
        return self._check(depth)

    def _check(self, depth: int | None) -> Outcome:
        bk = self.bids._keys
        ak = self.asks._keys
        if bk and ak and -bk[0] >= ak[0]:
            return "crossed"
        if depth is not None and (len(bk) > depth or len(ak) > depth):
            return "overfull"
        return "ok"

    def crossed(self) -> bool:
        """Best bid at or above best ask (a locked or crossed book: impossible on Bybit)."""
        bid, ask = self.bids.best(), self.asks.best()
        return bid is not None and ask is not None and bid >= ask

    def top(self, n: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
        """The ``n`` best bids and asks (all with None), best first."""
        return self.bids.levels(n), self.asks.levels(n)


__all__ = ["BookSide", "OrderBook", "Outcome"]
