"""First-candle backfill: what a pending first candle keeps, and how history is merged in.

A first candle opened before we were listening. While its history is asked for, the candle
goes on folding live trades into its own OHLCV (so nothing else is kept per trade) plus a
:class:`PendingBackfill`: the timestamp of our first trade in it and at most
:data:`MAX_MARKS` *volume marks* (the candle's volume and turnover after the newest trade of
each ``resolution_ms`` slot of trade time; when full, every other mark is dropped and the
resolution doubles). That is O(1) per (symbol, interval) whatever the message rate or the
answer's latency.

Merging the source's candle, which stood as it was at ``snapshot_ms``:

- exact: open (the source's first trade of the interval), high, low, and close (ours if our
  newest trade is stamped after the snapshot, else the source's);
- estimates: volume (turnover) = the source's total at the snapshot + ours stamped after it,
  read from the newest mark not after the snapshot (each mark holds our totals after the
  last trade of its slot), so ours after the snapshot can be over-counted by at most the
  trades of one slot (:data:`FIRST_RESOLUTION_MS` of trade time while fewer than
  ``MAX_MARKS`` slots have trades, coarser after); a trade the source had not yet counted
  at its snapshot is missed;
  trade_count counts only the trades we saw (a lower bound: candles carry no count).

Merging a stored summary (a sink's stored history: every trade stamped from the candle's
open to our first trade, summed): exact. Open, high and low as for a candle; volume,
turnover and trade count are added (none of ours is stamped before our first trade).

Merging recent trades (intervals the source has no candles for: sub-minute ones, 90s, ...):
the source's trades stamped before our first trade of the candle are folded in; trades
stamped in that same millisecond are taken as already seen. If the source keeps fewer
trades than happened since the candle opened, the candle stays flagged ``partial``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from decimal import Decimal

import attrs

from streamer import Trade
from streamer.history import Candles
from streamer.intervals import Interval, interval_of_ms

#: Volume marks kept per pending candle, and the first slot length (ms of trade time).
MAX_MARKS = 128
FIRST_RESOLUTION_MS = 50


@attrs.frozen
class BackfillRequest:
    """Ask for the history of the candle of (channel, symbol, interval) opening at ``start``;
    ``until``: our first trade in it (what a stored history must hold is everything
    stamped before it), ``None`` if not known."""

    channel: str
    symbol: str
    interval: int
    start: int
    until: int | None = attrs.field(default=None, eq=False)


@attrs.frozen
class SourceCandle:
    """A candle as the input source's history reported it at ``snapshot_ms``."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float
    snapshot_ms: int


class PendingBackfill:
    """What a first candle keeps while its history is on the way (see the module doc)."""

    __slots__ = ("deadline_ms", "first_ts", "marks_ts", "marks_turnover", "marks_volume",
                 "resolution_ms")

    def __init__(self, first_ts: int) -> None:
        self.first_ts = first_ts
        #: Wall time (ms) after which the candle stops waiting; set when the request leaves.
        self.deadline_ms: int | None = None
        self.resolution_ms = FIRST_RESOLUTION_MS
        # Flat arrays: 24 bytes a mark, about 3 KiB per waiting candle at most.
        self.marks_ts = array("q")
        self.marks_volume = array("d")
        self.marks_turnover = array("d")

    def mark(self, ts: int, volume: float, turnover: float) -> None:
        """Called after a trade stamped ``ts`` was folded in, with the candle's totals."""
        marks = self.marks_ts
        res = self.resolution_ms
        if marks and ts - ts % res <= marks[-1] - marks[-1] % res:
            # Same slot (or an older trade arriving late): the slot's mark moves on.
            if ts > marks[-1]:
                marks[-1] = ts
            self.marks_volume[-1] = volume
            self.marks_turnover[-1] = turnover
            return
        if len(marks) >= MAX_MARKS:
            del marks[::2], self.marks_volume[::2], self.marks_turnover[::2]
            self.resolution_ms *= 2
        marks.append(ts)
        self.marks_volume.append(volume)
        self.marks_turnover.append(turnover)

    def before(self, snapshot_ms: int) -> tuple[float, float]:
        """Our volume and turnover stamped at or before ``snapshot_ms``: the totals at the
        newest mark not after it (short by at most the trades of one slot)."""
        i = bisect_right(self.marks_ts, snapshot_ms)
        if i == 0:
            return 0.0, 0.0
        return self.marks_volume[i - 1], self.marks_turnover[i - 1]


def candle_from(candles: Candles, interval: Interval, start: int) -> SourceCandle | None:
    """The candle of ``interval`` opening at ``start``, from the source's (finer or equal)
    candles; ``None`` if none of them falls in it."""
    end = interval.end(start)
    rows = [c for c in candles.rows if start <= c.start < end]
    if not rows:
        return None
    return SourceCandle(
        open=rows[0].open,
        high=max(c.high for c in rows),
        low=min(c.low for c in rows),
        close=rows[-1].close,
        volume=exact_sum(c.volume for c in rows),
        turnover=exact_sum(c.turnover for c in rows),
        snapshot_ms=candles.snapshot_ms,
    )


def exact_sum(values: Iterable[float]) -> float:
    """The sum of the decimals the floats read as (a source's amounts came as decimal
    strings), as the nearest float: no float noise from adding them."""
    return float(sum((Decimal(repr(float(v))) for v in values), Decimal(0)))


def trades_in(trades: Iterable[Trade], start: int, end: int) -> list[Trade]:
    return [t for t in trades if start <= t.ts < end]


@attrs.define
class CandleAsk:
    """One ``candles`` call serving several requests of one symbol."""

    base: Interval
    since: int
    requests: list[BackfillRequest]

    def limit(self, now_ms: int) -> int:
        return rows_needed(self.base, self.since, now_ms)


#: Rows asked beyond what our clock says exist, in case the source's clock is ahead of ours
#: (the source answers with the newest rows, and the oldest is the one that matters).
ROWS_SLACK = 2


def rows_needed(base: Interval, since: int, now_ms: int) -> int:
    """Candles of ``base`` from the one opening at ``since`` to the one holding ``now_ms``,
    plus :data:`ROWS_SLACK`."""
    if not base.months:
        return (base.start(max(now_ms, since)) - since) // base.ms + 1 + ROWS_SLACK
    n, start = 1, base.end(since)
    while start <= now_ms and n <= 10_000:  # calendar months: count them, boundedly
        start = base.end(start)
        n += 1
    return n + ROWS_SLACK


def plan(
    requests: Sequence[BackfillRequest], candle_intervals: Iterable[int], max_candles: int,
    now_ms: int,
) -> tuple[list[CandleAsk], list[BackfillRequest]]:
    """Group one symbol's requests into as few ``candles`` calls as the source allows: each
    interval is served by candles of an interval whose boundaries are all its own (1m rows
    serve 5m, 1h and 4h candles), reusing a call already planned if its rows reach back far
    enough within ``max_candles``, else by the longest such interval. Requests no candle
    interval can serve are returned apart, for ``trades_since``."""
    bases = sorted((interval_of_ms(ms) for ms in candle_intervals), key=lambda i: -i.ms)
    asks: list[CandleAsk] = []
    by_trades: list[BackfillRequest] = []
    for request in sorted(requests, key=lambda r: r.interval):
        wanted = interval_of_ms(request.interval)
        for ask in asks:
            since = min(ask.since, request.start)
            if ask.base.divides(wanted) and rows_needed(ask.base, since, now_ms) <= max_candles:
                ask.since = since
                ask.requests.append(request)
                break
        else:
            for base in bases:
                if base.divides(wanted) and (
                        rows_needed(base, request.start, now_ms) <= max_candles):
                    asks.append(CandleAsk(base, request.start, [request]))
                    break
            else:
                by_trades.append(request)
    return asks, by_trades
