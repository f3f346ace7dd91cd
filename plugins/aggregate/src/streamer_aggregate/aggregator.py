"""The kline state machine: trades in, OHLCV klines out. No I/O, no clock of its own.

Per (channel, symbol, interval) an :class:`IntervalState` holds the open candles (usually
one; two for a moment in waiter mode, while the previous candle waits out its latency) and a
*cursor*: every candle that starts before the cursor is closed and emitted, for good. A trade
older than the cursor is *late*: it is counted and dropped, never folded into the wrong
candle and never re-opening a closed one (the older streamer emitted a bogus extra kline).

When a candle closes, by the caller's clock (:meth:`KlineAggregator.close_due`) or by a trade:

- waiter mode (``waiter_ms > 0``): at ``end + waiter_ms``. A trade stamped at or after
  ``end + waiter_ms`` closes it too (the exchange's own clock says the wait is over), which
  bounds the state even if nobody calls ``close_due``.
- without waiter (``waiter_ms == 0``): on the first trade of a later interval or at ``end``
  by the clock, whichever comes first. Trades of the closed candle that arrive after that are
  late.

Intervals are any :class:`streamer.intervals.Interval`: fixed lengths aligned to the epoch
(weeks on Monday) or calendar months; a month kline carries the nominal length on the wire.

Intervals without trades become flat klines (o=h=l=c=previous close, volume 0,
trade_count 0) when ``fill_gaps`` is set, once the symbol has a previous close.

Volume and turnover are exact decimal sums, counted in integer units
(:mod:`streamer_aggregate.amounts`).

The hot path (:meth:`KlineAggregator.add_trades`) looks the units of a trade's size (and
price, with turnover) up in the symbol's cache once per trade, checks once whether the trade
falls in every interval's newest candle (the symbol's
:class:`~streamer_aggregate.candles.SymbolCandles` span) and then updates a few slots of that
group, which settles them into each interval's candle before any is read: the work per trade
does not grow with the intervals, and no dict, tuple or object is allocated per trade unless
a candle opens or closes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from streamer import Kline, Metrics, Trade
from streamer_aggregate.amounts import Amounts
from streamer_aggregate.backfill import BackfillRequest, PendingBackfill
from streamer_aggregate.backfill_merge import BackfillMerge
from streamer_aggregate.candles import Bucket, IntervalState, SymbolCandles
from streamer_aggregate.dropped_trades import DroppedTrades
from streamer_aggregate.first_candles import WaitingFirstCandles
from streamer_aggregate.gap_holds import GapHolds

Updates = Literal["closed", "every_trade", "throttled"]
FirstCandle = Literal["backfill", "partial", "skip"]

_INF = float("inf")


class KlineAggregator(BackfillMerge):
    """Builds klines for every (channel, symbol) it sees, for the given intervals; how a
    first candle's history is merged in: :mod:`streamer_aggregate.backfill_merge`."""

    def __init__(
        self,
        intervals: Sequence[int],
        *,
        waiter_ms: int = 100,
        updates: Updates = "closed",
        fill_gaps: bool = True,
        turnover: bool = False,
        first_candle: FirstCandle = "partial",
        backfill_deadline_ms: int = 10_000,
        metrics: Metrics | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not intervals:
            raise ValueError("at least one interval is needed")
        if len(set(intervals)) != len(intervals):
            raise ValueError(f"duplicate intervals in {list(intervals)}")
        if waiter_ms < 0:
            raise ValueError("waiter_ms must be >= 0")
        self.intervals = tuple(sorted(intervals))
        self.waiter_ms = waiter_ms
        self.updates = updates
        self.fill_gaps = fill_gaps
        self.turnover = turnover
        self.first_candle = first_candle
        self.backfill_deadline_ms = backfill_deadline_ms
        self.metrics = metrics if metrics is not None else Metrics()
        self.log = logger if logger is not None else logging.getLogger("streamer.aggregate")
        self._track_updates = updates != "closed"
        self._by_channel: dict[str, dict[str, SymbolCandles]] = {}
        #: Timestamp of the first trade seen per channel: candles that opened before it may
        #: hold trades we never saw.
        self._first_ts: dict[str, int] = {}
        self._all: list[IntervalState] = []
        self.amounts = Amounts(self._open_buckets, turnover)
        self._dirty: list[Bucket] = []
        #: Flushes of open-kline updates so far (``SymbolCandles.marked``).
        self._flushes = 0
        self._pending = WaitingFirstCandles(backfill_deadline_ms)
        self._dropped = DroppedTrades(self.metrics, self.log)
        #: Stream gaps being recovered (the transform holds and releases them; call
        #: :meth:`close_due` after a release).
        self.holds = GapHolds(self._by_channel, self.metrics, self.log)

    # -- trades -------------------------------------------------------------------------

    def add_trades(self, trades: Iterable[object]) -> list[Kline]:
        """Fold a batch of events in (non-Trade events are ignored).

        Returns the klines this closes (non-waiter mode, or a trade past a waiter window) and,
        with ``updates = "every_trade"``, the open klines the batch changed.
        """
        out: list[Kline] = []
        by_channel = self._by_channel
        track = self._track_updates
        with_turnover = self.turnover
        amounts = self.amounts
        sizes = amounts.sizes
        prices = amounts.prices
        price_scale, price_scale_float = amounts.price_scale, amounts.price_scale_float
        dirty = self._dirty
        flush = self._flushes  # nothing in this loop flushes
        for t in trades:
            if t.__class__ is not Trade:
                continue
            # The strings are the source's; this is where they are read as numbers. The
            # caches hold only amounts that passed (Amounts refuses zero, negative, NaN and
            # infinite ones), so a hit needs no check.
            try:
                v = sizes.get(t.size)
                if v is None:
                    v = amounts.size_units(t.size)
                if with_turnover:
                    text = t.price
                    p = float(text)
                    # The units without a lookup when the float tells them exactly
                    # (amounts.py's module doc); else the cache, or the parser.
                    x = p * price_scale_float
                    if not (0.5 < x < 1e15 and len(text) < 16
                            and (units := int(x + 0.5)) / price_scale == p):
                        cached = prices.get(text)
                        if cached is not None:
                            units = cached
                        else:
                            units = amounts.price_units(text)  # may widen the scales
                            price_scale = amounts.price_scale
                            price_scale_float = amounts.price_scale_float
                    tv = units * v
                else:
                    p = float(t.price)
                    if not 0.0 < p < _INF:  # NaN fails it too
                        raise ValueError(f"price {t.price!r:.40} is not a positive number")
                    tv = 0
            except (ValueError, TypeError) as exc:
                self._dropped.malformed(t, exc)
                continue
            symbols = by_channel.get(t.channel)
            if symbols is None:
                symbols = self._new_channel(t)
            group = symbols.get(t.symbol)
            if group is None:
                group = self._new_symbol(t.channel, t.symbol)
            ts: int = t.ts
            if group.lo <= ts < group.hi:
                # In every interval's newest candle: folded into the group, which settles
                # it into each of them before any is read (SymbolCandles). This runs per
                # trade: a method call here costs more than the work itself.
                group.volume += v
                group.trades += 1
                if with_turnover:
                    group.turnover += tv
                if p > group.high:
                    group.high = p
                if p < group.low:
                    group.low = p
                if ts >= group.close_ts:
                    group.close = p
                    group.close_ts = ts
                if ts < group.open_ts:
                    group.open = p
                    group.open_ts = ts
                if track and group.marked != flush:
                    group.marked = flush
                    for b in group.curs:
                        if not b.dirty:
                            b.dirty = True
                            dirty.append(b)
            else:
                # A candle opens or closes, or the trade is older: folded directly, after
                # what the group holds (the order decides a tie for open and close).
                group.settle()
                for st in group.states:
                    cur = st.cur
                    if cur is not None and cur.start <= ts < cur.end:
                        self._fold(cur, ts, p, v, tv)
                    else:
                        self._add_slow(st, ts, p, v, tv, out)
        if self.updates == "every_trade" and dirty:
            out.extend(self.flush_updates())
        return out

    def _open_buckets(self) -> Iterator[Bucket]:
        for symbols in self._by_channel.values():
            for group in symbols.values():
                group.settle()
        return (b for st in self._all for b in st.buckets)

    def _new_channel(self, t: Trade) -> dict[str, SymbolCandles]:
        symbols: dict[str, SymbolCandles] = {}
        self._by_channel[t.channel] = symbols
        self._first_ts[t.channel] = t.ts
        return symbols

    def _new_symbol(self, channel: str, symbol: str) -> SymbolCandles:
        states = [IntervalState(channel, symbol, ms) for ms in self.intervals]
        held = self.holds.since(channel, symbol)
        if held is not None:
            for st in states:
                st.held = held
        group = self._by_channel[channel][symbol] = SymbolCandles(states)
        self._all.extend(states)
        return group

    def _add_slow(
        self, st: IntervalState, ts: int, p: float, v: int, tv: int, out: list[Kline]
    ) -> None:
        """A trade outside the newest open candle: older candle, new candle, or late."""
        if st.cursor is not None and ts < st.cursor:
            self._dropped.late(st, ts)
            return
        start = st.start_of(ts)
        for b in st.buckets:
            if b.start == start:
                self._fold(b, ts, p, v, tv)
                return
        # Close what this trade proves is over before opening its candle, so that klines
        # come out in time order.
        self._advance(st, ts - self.waiter_ms if self.waiter_ms else start, out)
        b = Bucket(st, start, ts, p, v, tv)
        if not st.started:
            st.started = True
            if start < self._first_ts[st.channel]:
                self._first_candle_incomplete(b, ts)
        buckets = st.buckets
        if not buckets or start > buckets[-1].start:
            buckets.append(b)
        else:
            i = 0
            while buckets[i].start < start:
                i += 1
            buckets.insert(i, b)
        self._reset_cur(st)
        if self._track_updates:
            b.dirty = True
            self._dirty.append(b)

    def _fold(self, b: Bucket, ts: int, p: float, v: int, tv: int) -> None:
        if p > b.high:
            b.high = p
        elif p < b.low:
            b.low = p
        if ts >= b.close_ts:
            b.close = p
            b.close_ts = ts
        elif ts < b.open_ts:
            b.open = p
            b.open_ts = ts
        b.volume += v
        b.trade_count += 1
        b.turnover += tv
        if b.pending is not None:
            b.pending.mark(ts, *b.totals(self.amounts))
        if self._track_updates and not b.dirty:
            b.dirty = True
            self._dirty.append(b)

    def _first_candle_incomplete(self, b: Bucket, ts: int) -> None:
        """The first candle of this key opened before we were listening."""
        mode = self.first_candle
        if mode == "partial":
            b.partial = True
        elif mode == "skip":
            b.skip = True
            self.metrics.inc("skipped_first_klines")
        else:
            b.pending = PendingBackfill(ts)
            b.pending.mark(ts, *b.totals(self.amounts))
            self._pending.add(b)

    @staticmethod
    def _reset_cur(st: IntervalState) -> None:
        last = st.buckets[-1] if st.buckets else None
        st.cur = last if last is not None and last.pending is None else None
        assert st.group is not None
        st.group.refresh()

    # -- closing ------------------------------------------------------------------------

    def close_due(self, now_ms: int) -> list[Kline]:
        """Close every candle whose end (+ waiter latency) is at or before ``now_ms``, and emit
        flat klines for empty intervals up to then. Klines of one key come out in time order.
        """
        out: list[Kline] = []
        if self.holds:
            self.holds.expire(now_ms)
        if self._pending:
            self._expire_backfills(now_ms)
        limit = now_ms - self.waiter_ms
        for st in self._all:
            cursor = st.cursor
            if cursor is not None and (st.end_of(cursor) if st.months else cursor + st.ms) > limit:
                continue
            self._advance(st, limit, out)
        return out

    def _advance(self, st: IntervalState, limit: int, out: list[Kline]) -> None:
        """Close the intervals of ``st`` that end at or before ``limit``."""
        if st.held is not None and limit > st.held:
            limit = st.held
        buckets = st.buckets
        while True:
            if st.cursor is not None:
                s = st.cursor
            elif buckets:
                s = buckets[0].start
            else:
                return
            end = st.end_of(s)
            if end > limit:
                return
            if buckets and buckets[0].start == s:
                b = buckets.pop(0)
                self._emit_closed(b, out)
                st.last_close = b.close
                st.cursor = end
                self._reset_cur(st)
            elif self.fill_gaps and st.last_close is not None:
                c = st.last_close
                out.append(st.flat_kline(s, c, self.turnover))
                st.cursor = end
            else:
                # Nothing to emit for the empty stretch: jump over it.
                latest = st.start_of(limit)
                st.cursor = min(buckets[0].start, latest) if buckets else latest

    def _emit_closed(self, b: Bucket, out: list[Kline]) -> None:
        group = b.state.group
        if group is not None:
            group.settle()  # the caller reads the close, kline or not
        b.closed = True
        if b.pending is not None:
            # The history did not come in time: what we have is all we know.
            self._stop_pending(b)
            b.partial = True
            self.metrics.inc("backfill_too_late")
        if not b.skip:
            out.append(b.kline(True, self.amounts))

    # -- open-kline updates ----------------------------------------------------------------

    def flush_updates(self) -> list[Kline]:
        """Open klines changed since the last flush (``closed=False``), oldest change first."""
        out: list[Kline] = []
        self._flushes += 1
        amounts = self.amounts
        volume_scale = amounts.volume_scale
        turnover_scale = amounts.turnover_scale if amounts.turnover else 0
        for b in self._dirty:
            b.dirty = False
            if b.closed or b.skip or b.pending is not None:
                continue
            # Bucket.kline, inlined: one per changed candle, and most trades change five.
            st = b.state
            group = st.group
            if group is not None and group.trades:
                group.settle()
            out.append(Kline(st.channel, st.symbol, st.ms, b.start, b.open, b.high, b.low,
                             b.close, b.volume / volume_scale, b.trade_count, False,
                             b.turnover / turnover_scale if turnover_scale else None,
                             b.partial))
        self._dirty = []
        return out

    # -- backfill -----------------------------------------------------------------------------

    @property
    def backfill_requested(self) -> bool:
        """Requests wait for :meth:`take_backfill_requests` (mostly not: a symbol's first
        candles ask once)."""
        return self._pending.has_requests

    def take_backfill_requests(self, now_ms: int) -> list[BackfillRequest]:
        """History the aggregator wants (first candles that opened before we listened); each
        of these candles waits at most ``backfill_deadline_ms`` from ``now_ms``."""
        return self._pending.take_requests(now_ms)

    def pending_backfills(self) -> int:
        """First candles waiting for their history now."""
        return len(self._pending)

    def next_backfill_deadline(self) -> int | None:
        """When the earliest waiting first candle gives up (ms), or ``None``."""
        return self._pending.next_deadline()

    def _expire_backfills(self, now_ms: int) -> None:
        for b in self._pending.expired(now_ms):
            self._stop_pending(b)
            b.partial = True
            self.metrics.inc("backfill_deadline")
            self._mark_changed(b)

    def _stop_pending(self, b: Bucket) -> None:
        b.pending = None
        self._pending.remove(b)
        self._reset_cur(b.state)

    def waiting(self, request: BackfillRequest) -> bool:
        """Whether the candle of ``request`` still waits for its history."""
        return self._pending.find(request) is not None

    def _mark_changed(self, bucket: Bucket) -> list[Kline]:
        if self._track_updates and not bucket.closed:
            if not bucket.dirty:
                bucket.dirty = True
                self._dirty.append(bucket)
            if self.updates == "every_trade":
                return self.flush_updates()
        return []

    # -- introspection ---------------------------------------------------------------------

    def open_klines(self) -> list[Kline]:
        """Every open candle as a ``closed=False`` kline (for tests and shutdown reports)."""
        return [b.kline(False, self.amounts) for st in self._all for b in st.buckets]
