"""The order books of one connection: every ``orderbook`` message checked before it goes on.

Synchronous, no I/O (the caller passes the time; :attr:`BookKeeper.changed` is the one trio
object, set for the worker): the connection's reader hands each decoded book message to
:meth:`BookKeeper.on_message`, which applies it to the symbol's
:class:`~streamer.book.OrderBook` and appends a :class:`streamer.Book` event to the read's
events only when the book stays exact. The checks:

- **continuity**: a delta's ``u`` must be the last ``u`` + 1 (a missed, doubled or reordered
  delta breaks it): ``book_gaps``;
- **resets**: every snapshot replaces the book whole (levels of the old book never survive);
  a snapshot with ``u = 1`` after a live book means Bybit reset it (``book_resets``; its
  sides may be empty, a delisting);
- **crossed**: best bid >= best ask after a message: ``book_crossed``;
- **bounded**: more levels on a side than the depth (Bybit deletes what falls out of it):
  ``book_overfull``;
- **staleness**: no message for longer than :func:`~streamer_bybit.book_depths.stale_after_s`
  while the socket is alive (judged by :meth:`BookKeeper.stale`): ``book_stale``, and
  ``book_stale_seconds`` sums each stale book's silence, from its last message to its fresh
  snapshot.

A broken book is dropped at once: the symbol waits for a snapshot, its deltas meanwhile are
dropped (``book_dropped_deltas``), and :attr:`BookKeeper.resync` asks the connection to
resubscribe the topic (``book_resyncs``), whose first message is a fresh snapshot. Each break
opens a book gap (:attr:`BookKeeper.gaps`, a :class:`streamer.StreamGap` with
``data_type = "book"``), closed by the snapshot that makes the book exact again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import msgspec
import trio

from streamer import Book, Event, Metrics, RateLimitedLog, StreamGap
from streamer.book import OrderBook

Status = Literal["waiting", "live", "broken"]

#: Why a book was dropped, and the counter each reason bumps.
#: A symbol's topic is resubscribed at most once per this many seconds: a book that breaks
#: again at once (an exchange sending crossed books) must not turn into a resubscribe storm.
RESYNC_SPACING: Final = 1.0

FAULT_COUNTERS: Final = {"gap": "book_gaps", "crossed": "book_crossed", "stale": "book_stale",
                         "overfull": "book_overfull"}


class BookData(msgspec.Struct, gc=False):
    """The ``data`` of an ``orderbook`` message."""

    s: str
    b: list[list[str]]
    a: list[list[str]]
    u: int
    seq: int | None = None


_book_data_decoder: Final = msgspec.json.Decoder(BookData)


class BookMessage(msgspec.Struct, gc=False):
    """A whole ``orderbook`` message, envelope and ``data`` in one decode (the reader's
    fast path for payloads that start with :data:`BOOK_PREFIX`); the envelope's fields and
    defaults are those of the general decoder's message."""

    topic: str
    data: BookData
    type: str = ""
    ts: int = 0
    cts: int | None = None


#: How Bybit starts every ``orderbook`` push (topic first, as it sends every push).
BOOK_PREFIX: Final = b'{"topic":"orderbook.'
book_message_decoder: Final = msgspec.json.Decoder(BookMessage)


class SymbolBook:
    """One symbol's book and where it stands."""

    __slots__ = ("book", "gap_since", "last", "last_ts", "pending", "resubscribed_at",
                 "stale_since", "status")

    def __init__(self, now: float) -> None:
        self.book = OrderBook()
        #: "waiting": no snapshot yet this session; "live": exact, its events go on;
        #: "broken": dropped after a fault, waiting for the resubscribe's snapshot.
        self.status: Status = "waiting"
        #: trio time of its newest message (or of when it started waiting for one).
        self.last = now
        #: Push time (ms) of the newest event emitted: every event up to it went on.
        self.last_ts = 0
        #: An open gap: the ``since_ms`` it was reported with (None: no gap open).
        self.gap_since: int | None = None
        #: trio time of its last message before it went stale (None: not stale).
        self.stale_since: float | None = None
        #: Its resubscribe is asked for or in flight: silence is not judged meanwhile.
        self.pending = False
        #: trio time its topic was last handed out for a resubscribe.
        self.resubscribed_at = -math.inf


class BookKeeper:
    """The books of one connection's ``orderbook`` topics; see the module doc."""

    def __init__(self, channel: str, depth: int, symbols: Sequence[str], stale_after: float,
                 metrics: Metrics, log: RateLimitedLog, name: str, *,
                 resync_spacing: float = RESYNC_SPACING, follow_new: bool = False) -> None:
        self.channel = channel
        #: A message of a symbol not in ``books`` starts its book (a replay: the capture's
        #: header names the topics at its start, not those a listing added later).
        self.follow_new = follow_new
        self.resync_spacing = resync_spacing
        self.depth = depth
        self._depth_text = str(depth)
        self._topic_prefix = f"orderbook.{depth}."
        self.stale_after = stale_after
        self.metrics = metrics
        self.log = log
        self.name = name
        self.books: dict[str, SymbolBook] = {s: SymbolBook(0.0) for s in symbols}
        #: Symbols to resubscribe, with the reason (the connection takes them).
        self.resync: dict[str, str] = {}
        #: Gaps opened and closed, in order, for the connection to report.
        self.gaps: list[StreamGap] = []
        #: Staleness is judged only once the session is subscribed.
        self.armed = False
        #: Seconds of silence of the books that went stale (``book_stale_seconds``).
        self.stale_seconds = 0.0
        #: trio time of the read being decoded (set by the reader before each read).
        self.now = 0.0
        #: Set when a resync is asked for or a gap is to be reported (the worker waits on
        #: it, and puts a fresh one in its place before it waits again).
        self.changed = trio.Event()

    def topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{symbol}"

    # ------------------------------------------------------------------ sessions
    def new_session(self, now: float) -> None:
        """A new socket: every book is dropped and waits for its snapshot; a book that was
        exact opens a gap (the messages of the lost socket's last moments may be missing)."""
        self.armed = False
        self.resync.clear()
        for symbol, sb in self.books.items():
            sb.pending = False
            if sb.status == "live":
                self._open_gap(symbol, sb)
            sb.book.reset()
            sb.status = "waiting"
            sb.last = now

    def arm(self, now: float) -> None:
        """The session is subscribed: silence counts from now."""
        self.armed = True
        for sb in self.books.values():
            if sb.status != "live":
                sb.last = max(sb.last, now)

    def resubscribed(self, symbol: str, now: float) -> None:
        """``symbol``'s topic was subscribed again: its snapshot is due from now."""
        sb = self.books.get(symbol)
        if sb is not None:
            sb.pending = False
            if sb.status != "live":
                sb.last = now

    def add(self, symbol: str, now: float) -> None:
        """``symbol``'s topic was added while running (a listing): its book waits for the
        snapshot that follows the subscribe."""
        if symbol not in self.books:
            self.books[symbol] = SymbolBook(now)
            self.changed.set()  # the worker's next staleness deadline may be this one's

    def forget(self, symbol: str) -> None:
        """``symbol``'s topic was refused or removed (delisted): it has no book to keep."""
        self.books.pop(symbol, None)
        self.resync.pop(symbol, None)

    def emitted(self, read_at: float, now: float) -> None:
        """The reader handed the read of ``read_at`` downstream until ``now``: a silence
        that long (a quarter of the limit or more) was ours, not Bybit's."""
        if now - read_at > self.stale_after / 4:
            for sb in self.books.values():
                if sb.last < now:
                    sb.last = now

    # ------------------------------------------------------------------ messages
    def on_book(self, m: BookMessage, out: list[Event]) -> None:
        """One whole ``orderbook`` message decoded by the reader's fast path: a delta of a
        live book whose topic matches is checked and applied here, inline (the hot path);
        anything else goes the way of :meth:`decode`. Raises as :meth:`decode`."""
        d = m.data
        symbol = d.s
        sb = self.books.get(symbol)
        if (sb is None or m.type != "delta" or sb.status != "live"
                or m.topic != self._topic_prefix + symbol):
            rest = m.topic[10:]  # after "orderbook."
            depth, _, topic_symbol = rest.partition(".")
            if depth != self._depth_text or symbol != topic_symbol:
                raise ValueError(f"book message of orderbook.{rest} for {symbol!r}")
            self.on_message(symbol, m.type, d.b, d.a, d.u, d.seq, m.cts, m.ts, self.now, out)
            return
        now = self.now
        sb.last = now
        try:
            outcome = sb.book.delta(d.b, d.a, d.u, d.seq, self.depth)
        except (ValueError, TypeError):
            self._break(symbol, sb, "gap", m.ts, now)
            raise
        if outcome != "ok":
            self._break(symbol, sb, outcome, m.ts, now)
            return
        sb.last_ts = m.ts
        out.append(Book(self.channel, symbol, "delta", d.b, d.a, d.u, m.ts, d.seq, m.cts))

    def decode(self, rest: str, kind: str, data: msgspec.Raw, ts: int, engine_ts: int | None,
               out: list[Event]) -> None:
        """One ``orderbook.{depth}.{symbol}`` message (``rest`` is ``{depth}.{symbol}``);
        raises for one that is malformed (the decoder counts it)."""
        depth, _, symbol = rest.partition(".")
        d = _book_data_decoder.decode(data)
        if depth != self._depth_text or d.s != symbol:
            raise ValueError(f"book message of orderbook.{rest} for {d.s!r}")
        self.on_message(symbol, kind, d.b, d.a, d.u, d.seq, engine_ts, ts, self.now, out)

    def on_message(self, symbol: str, kind: str, bids: list[list[str]], asks: list[list[str]],
                   update_id: int, seq: int | None, engine_ts: int | None, ts: int, now: float,
                   out: list[Event]) -> None:
        """Apply one message; append its :class:`streamer.Book` to ``out`` when the book
        stays exact. ValueError for a message that cannot be applied (not a snapshot or
        delta, a level that is no number): the book is then dropped and resubscribed too."""
        sb = self.books.get(symbol)
        if sb is None:
            if not self.follow_new:
                raise ValueError(f"book message for {symbol!r}, not a subscribed symbol")
            sb = self.books[symbol] = SymbolBook(now)
        book = sb.book
        sb.last = now
        if kind == "snapshot":
            if update_id == 1 and sb.status == "live":
                self.metrics.inc("book_resets")
                self.log.warning("book_reset", "%s: %s book reset by Bybit (u = 1, %d bids, "
                                 "%d asks): replaced whole", self.name, symbol, len(bids),
                                 len(asks))
            try:
                outcome = book.snapshot(bids, asks, update_id, seq, self.depth)
            except (ValueError, TypeError):
                self._break(symbol, sb, "gap", ts, now)
                raise
        elif kind == "delta":
            if sb.status != "live":
                self.metrics.inc("book_dropped_deltas")
                return
            try:
                outcome = book.delta(bids, asks, update_id, seq, self.depth)
            except (ValueError, TypeError):
                self._break(symbol, sb, "gap", ts, now)
                raise
        else:
            raise ValueError(f"book message of type {kind!r}")
        # "overfull": more levels than the depth (bounded, and not Bybit's book)
        if outcome != "ok":
            self._break(symbol, sb, outcome, ts, now)
            return
        if sb.status != "live":
            sb.status = "live"
            self._close_gap(symbol, sb, now)
        sb.last_ts = ts
        out.append(Book(self.channel, symbol, kind, bids, asks, update_id, ts, seq, engine_ts))

    # ------------------------------------------------------------------ staleness
    def next_deadline(self) -> float | None:
        """trio time at which the next book turns stale (None: not armed, or no book)."""
        if not self.armed:
            return None
        lasts = [sb.last for sb in self.books.values() if not sb.pending]
        return min(lasts) + self.stale_after if lasts else None

    def stale(self, now: float) -> list[str]:
        """Drop every book silent for ``stale_after`` or longer (a book already waiting
        for its resubscribe's snapshot waits again from now); return their symbols."""
        if not self.armed:
            return []
        out = []
        stale_after = self.stale_after
        for symbol, sb in self.books.items():
            if sb.last + stale_after <= now and not sb.pending:
                self._break(symbol, sb, "stale", sb.last_ts, now)
                out.append(symbol)
        return out

    # ------------------------------------------------------------------ faults
    def _break(self, symbol: str, sb: SymbolBook, reason: str, ts: int, now: float) -> None:
        self.metrics.inc(FAULT_COUNTERS[reason])
        if reason == "stale" and sb.stale_since is None:
            sb.stale_since = sb.last
        if sb.status == "live":
            self._open_gap(symbol, sb)
        sb.book.reset()
        sb.status = "broken"
        sb.last = now
        sb.pending = True
        if symbol not in self.resync:
            self.resync[symbol] = reason
        self.changed.set()
        self.log.warning(f"book_{reason}", "%s: %s book dropped (%s at push time %d); "
                         "resubscribing %s for a fresh snapshot", self.name, symbol, reason,
                         ts, self.topic(symbol))

    def _open_gap(self, symbol: str, sb: SymbolBook) -> None:
        if sb.gap_since is None:
            sb.gap_since = sb.last_ts
            self.gaps.append(StreamGap(self.channel, (symbol,), sb.last_ts, data_type="book"))
            self.changed.set()

    def _close_gap(self, symbol: str, sb: SymbolBook, now: float) -> None:
        if sb.stale_since is not None:
            self.stale_seconds += now - sb.stale_since
            sb.stale_since = None
        if sb.gap_since is not None:
            self.gaps.append(StreamGap(self.channel, (symbol,), sb.gap_since, closed=True,
                                       data_type="book"))
            self.changed.set()
            sb.gap_since = None

    def take_resync(self, now: float) -> dict[str, str]:
        """The symbols to resubscribe now (forgotten here; each counts one resync): those not
        resubscribed within ``resync_spacing``; the others stay for :meth:`next_resync`."""
        out: dict[str, str] = {}
        spacing = self.resync_spacing
        for symbol, reason in list(self.resync.items()):
            sb = self.books.get(symbol)
            if sb is None:
                del self.resync[symbol]
            elif sb.resubscribed_at + spacing <= now:
                sb.resubscribed_at = now
                out[symbol] = reason
                del self.resync[symbol]
        if out:
            self.metrics.inc("book_resyncs", len(out))
        return out

    def next_resync(self) -> float | None:
        """trio time at which the next waiting resubscribe is due (None: none waits)."""
        if not self.resync:
            return None
        spacing = self.resync_spacing
        return min(self.books[s].resubscribed_at + spacing for s in self.resync
                   if s in self.books)

    def take_gaps(self) -> list[StreamGap]:
        out, self.gaps = self.gaps, []
        return out


__all__ = ["BOOK_PREFIX", "FAULT_COUNTERS", "BookKeeper", "BookMessage", "SymbolBook",
           "book_message_decoder"]
