"""The fake's order books: a true book per ``orderbook.{depth}.{symbol}`` topic, Bybit's
messages about it, and the faults a test injects into those messages.

Semantics as Bybit's (docs/plugins/bybit.md, "Order books"): a subscribe is answered with a
snapshot of the current book and its current ``u``; each push after it is a delta whose ``u``
is the last + 1 (size ``"0"`` deletes a level); depth 1 sends snapshots only. A book stays
within its depth: a level pushed out is deleted by the same delta. ``seq`` grows by a random
step; ``cts`` is the push's engine time. A book of a symbol the fake trades sits at that
symbol's price when the book is first asked for (its price decimals, a level every random-walk
step); any other at 100,000 in steps of 0.5. It does not follow the trades after that. A book
starts with at most 60 levels a side (small messages for tests); ``BookFeed(full=True)`` fills
each to its whole depth, as a busy market's book is (the benches).

Pushes (:func:`run_books`): each subscribed topic at its depth's interval, Bybit's rhythm; or,
for benches, a set number of pushes a second over all the subscribed topics, or flat out.

Faults (:meth:`BookFeed.inject`, taken one per push, in order):

- ``"drop"``: the book changes, its delta is not sent;
- ``"duplicate"``: the delta is sent twice;
- ``"swap"``: two deltas are made and sent in the wrong order;
- ``"reset"``: Bybit resets the book: a snapshot with ``u = 1`` and fresh levels;
- ``"delist"``: a reset with both sides empty;
- ``"silent"``: the topic stops (pings still answered) until it is subscribed again;
- ``"crossed"``: a delta that puts a bid at or above the best ask (a wrong message: the true
  book does not take it, only its ``u`` moves on).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import trio

from streamer_bybit.book_depths import DEPTHS, push_interval_ms
from streamer_bybit.simulator.market import fmt

#: The pusher's step: the shortest push interval (depth 1), every other one a multiple of it.
TICK_MS: Final = 10
TICK_S: Final = TICK_MS / 1000

FAULTS: Final = ("drop", "duplicate", "swap", "reset", "delist", "silent", "crossed")

#: The grid of a book of no known symbol: the middle (bids below it, asks above it, so that
#: the true book is never crossed) in ticks, a tick in units of the last price decimal, and
#: the decimals: 100,000 in steps of 0.5.
MID_TICKS: Final = 200_000
TICK_UNITS: Final = 5
DECIMALS: Final = 1

#: Where a book sits: (middle in ticks, a tick in units of the last decimal, decimals).
Grid = tuple[int, int, int]


def book_depth_ok(category: str, depth: str) -> bool:
    """``depth`` (a topic's text) is one ``category`` serves."""
    return depth.isdigit() and int(depth) in DEPTHS.get(category, ())


class SimBook:
    """One topic's true book: price ticks -> size string per side, and its ``u``."""

    def __init__(self, symbol: str, depth: int, rng: random.Random,
                 grid: Grid = (MID_TICKS, TICK_UNITS, DECIMALS), *, full: bool = False) -> None:
        self.symbol = symbol
        self.depth = depth
        self.rng = rng
        self.mid, self._tick_units, self._decimals = grid
        self.full = full
        #: Levels a side a fresh book gets: the whole depth when ``full``, else at most 60.
        self.spread = depth if full else min(depth, 60)
        self.bids: dict[int, str] = {}
        self.asks: dict[int, str] = {}
        self.u = 0
        self.seq = rng.randrange(1_000_000, 2_000_000)
        self.fill()

    def fill(self) -> None:
        """Fresh levels on both sides, :attr:`spread` each."""
        n = self.spread
        self.bids = {self.mid - 1 - i: self._size() for i in range(n)}
        self.asks = {self.mid + 1 + i: self._size() for i in range(n)}

    def _size(self) -> str:
        return f"{self.rng.randrange(1, 5000) / 1000:.3f}"

    def price(self, ticks: int) -> str:
        return fmt(ticks * self._tick_units, self._decimals)

    def levels(self) -> tuple[list[list[str]], list[list[str]]]:
        """The book as Bybit lists it: bids best (highest) first, asks best (lowest) first."""
        bids = [[self.price(t), self.bids[t]] for t in sorted(self.bids, reverse=True)]
        asks = [[self.price(t), self.asks[t]] for t in sorted(self.asks)]
        return bids[: self.depth], asks[: self.depth]

    def _data(self, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
        return {"s": self.symbol, "b": bids, "a": asks, "u": self.u, "seq": self.seq}

    def snapshot_data(self) -> dict[str, Any]:
        if self.u == 0:
            self.u = 1
        return self._data(*self.levels())

    def step(self) -> dict[str, Any]:
        """Change the book a little; the delta (or, depth 1, the snapshot) data of it."""
        self.u += 1
        self.seq += self.rng.randrange(1, 50)
        if self.depth == 1:
            self._change(self.bids, -1)
            self._change(self.asks, 1)
            return self.snapshot_data()
        changes: tuple[dict[int, str], dict[int, str]] = ({}, {})
        for _ in range(self.rng.randrange(1, 4)):
            side = self.rng.randrange(2)
            book = self.bids if side == 0 else self.asks
            changes[side].update(self._change(book, -1 if side == 0 else 1))
        bids = [[self.price(t), s] for t, s in sorted(changes[0].items(), reverse=True)]
        asks = [[self.price(t), s] for t, s in sorted(changes[1].items())]
        return self._data(bids, asks)

    def _change(self, book: dict[int, str], sign: int) -> dict[int, str]:
        """One change to ``book`` (sign -1: bids, 1: asks): a size, a delete or an insert,
        and the delete of the level an insert pushed out of the depth. A full book stays full:
        a delete brings the next level beyond its edge into view (as a depth-limited view of
        a deeper book does), and inserts land within its depth. What changed, by tick (size
        "0": deleted)."""
        rng = self.rng
        changed: dict[int, str] = {}
        what = rng.randrange(3)
        if book and what == 0:
            t = rng.choice(list(book))
            book[t] = changed[t] = self._size()
        elif book and what == 1 and len(book) > 1:
            t = rng.choice(list(book))
            del book[t]
            changed[t] = "0"
            if self.full and len(book) < self.depth:
                edge = max(book) if sign == 1 else min(book)
                t = edge + sign * rng.randrange(1, 4)
                book[t] = changed[t] = self._size()
        else:
            reach = self.spread + 2 if self.full else 2 * self.spread + 2
            t = self.mid + sign * rng.randrange(1, reach)
            book[t] = changed[t] = self._size()
            if len(book) > self.depth:  # the worst level falls out of the depth
                worst = max(book) if sign == 1 else min(book)
                del book[worst]
                changed[worst] = "0"
        return changed

    def reset(self, *, empty: bool) -> dict[str, Any]:
        """Bybit resets the book: ``u = 1``, fresh levels (none at all when ``empty``)."""
        if empty:
            self.bids, self.asks = {}, {}
        else:
            self.fill()
        self.u = 1
        self.seq += self.rng.randrange(1, 50)
        return self._data(*self.levels())

    def crossed_data(self) -> dict[str, Any]:
        """A wrong delta (``u`` moves on): a bid at the best ask, or above the middle."""
        self.u += 1
        at = self.price(min(self.asks) if self.asks else self.mid + 1)
        return self._data([[at, "1.000"]], [[at, "1.000"]])


class BookFeed:
    """Every true book of the fake, and the faults waiting for their pushes."""

    def __init__(self, seed: int, grid: Callable[[str, str], Grid | None] | None = None, *,
                 full: bool = False) -> None:
        self.rng = random.Random(seed * 31 + 7)
        #: (category, symbol) -> where a new book of it sits (None: the default grid).
        self._grid = grid
        #: Books filled to their whole depth (see :class:`SimBook`).
        self.full = full
        self.books: dict[tuple[str, str], SimBook] = {}
        self.faults: dict[tuple[str, str], deque[str]] = {}
        #: Topics stopped by a "silent" fault, until subscribed again.
        self.silent: set[tuple[str, str]] = set()
        #: Messages pushed per (category, topic) (what was sent, faults included).
        self.pushes: dict[tuple[str, str], int] = {}

    def book(self, category: str, topic: str) -> SimBook:
        key = (category, topic)
        b = self.books.get(key)
        if b is None:
            _, depth, symbol = topic.split(".")
            grid = self._grid(category, symbol) if self._grid is not None else None
            b = self.books[key] = SimBook(symbol, int(depth), self.rng,
                                          *(() if grid is None else (grid,)), full=self.full)
        return b

    def inject(self, category: str, topic: str, fault: str) -> None:
        """``fault`` (one of :data:`FAULTS`) at the next push of ``topic`` not yet taken."""
        if fault not in FAULTS:
            raise ValueError(f"unknown book fault {fault!r}: one of {', '.join(FAULTS)}")
        self.faults.setdefault((category, topic), deque()).append(fault)

    def subscribed(self, category: str, topic: str, ts: int) -> dict[str, Any]:
        """A subscribe of ``topic``: its snapshot message (a silent topic speaks again)."""
        self.silent.discard((category, topic))
        return _message(topic, "snapshot", ts, self.book(category, topic).snapshot_data())

    def push(self, category: str, topic: str, ts: int, *, unchanged: bool = False
             ) -> list[dict[str, Any]]:
        """The book changes once (twice for "swap"); the messages its subscribers get.
        ``unchanged``: nothing changed (depth 1 repeats its snapshot, same ``u``, every 3 s;
        deeper books send nothing)."""
        key = (category, topic)
        book = self.book(category, topic)
        if unchanged:
            if key in self.silent or book.depth != 1:
                return []
            return [_message(topic, "snapshot", ts, book.snapshot_data())]
        queue = self.faults.get(key)
        fault = queue.popleft() if queue else None
        kind = "snapshot" if book.depth == 1 else "delta"
        if fault == "silent":
            self.silent.add(key)
        if key in self.silent:
            book.step()
            return []
        if fault == "drop":
            book.step()
            out = []
        elif fault == "duplicate":
            m = _message(topic, kind, ts, book.step())
            out = [m, m]
        elif fault == "swap":
            first = _message(topic, kind, ts, book.step())
            out = [_message(topic, kind, ts, book.step()), first]
        elif fault in ("reset", "delist"):
            out = [_message(topic, "snapshot", ts, book.reset(empty=fault == "delist"))]
        elif fault == "crossed":
            out = [_message(topic, kind, ts, book.crossed_data())]
        else:
            out = [_message(topic, kind, ts, book.step())]
        self.pushes[key] = self.pushes.get(key, 0) + len(out)
        return out


async def run_books(fake: Any, *, rate: float | None = None,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Push the subscribed ``orderbook`` topics of ``fake`` (a FakeBybit), one change per
    push, from now on, until cancelled. ``rate`` None: each topic at its depth's push interval
    (:func:`~streamer_bybit.book_depths.push_interval_ms`), Bybit's rhythm. ``rate > 0``: that
    many pushes a second in all, round-robin over the subscribed topics, every push then due
    made at each (millisecond) wake-up, as ``run_market``'s batched pacing; ``rate = 0``: flat
    out, as fast as the sockets take them."""
    if rate is not None:
        await _run_books_paced(fake, rate, task_status)
        return
    start = trio.current_time()
    task_status.started()
    tick = 0
    while True:
        tick += 1
        await trio.sleep_until(start + tick * TICK_S)
        elapsed_ms = tick * TICK_MS
        for (category, topic), subs in list(fake._subs.items()):
            if not subs or not topic.startswith("orderbook."):
                continue
            depth = int(topic.split(".")[1])
            if elapsed_ms % push_interval_ms(category, depth) == 0:
                fake.push_book(category, topic)


async def _run_books_paced(fake: Any, rate: float, task_status: Any) -> None:
    """:func:`run_books` at ``rate`` pushes a second in all (0: flat out). The count starts
    again whenever no book topic is subscribed; a slow connection holds the pushes back."""
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate!r}")
    task_status.started()
    start, paced, k = trio.current_time(), 0, 0
    while True:
        topics = [key for key, subs in fake._subs.items()
                  if subs and key[1].startswith("orderbook.")]
        if not topics:
            await fake._sub_changed.park()
            start, paced = trio.current_time(), 0
            continue
        due = fake._batched_due(rate, trio.current_time(), start, paced)
        if not due:
            await trio.sleep_until(start + paced / rate)
            continue
        for _ in range(due):
            fake.push_book(*topics[k % len(topics)])
            k += 1
        paced += due
        for c in fake.connections:
            if c.backlogged:
                await c.wait_space()
        await trio.lowlevel.checkpoint()


def _message(topic: str, kind: str, ts: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"topic": topic, "type": kind, "ts": ts, "data": data, "cts": ts - 2}


__all__ = ["FAULTS", "BookFeed", "SimBook", "book_depth_ok", "run_books"]
