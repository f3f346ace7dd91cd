"""The state of candles being built: one :class:`Bucket` per open candle, one
:class:`IntervalState` per (channel, symbol, interval). Plain slotted objects: the
aggregator's hot path reads and writes their attributes directly."""

from __future__ import annotations

from streamer import Kline
from streamer.history import TradeSummary
from streamer.intervals import interval_of_ms
from streamer_aggregate.amounts import Amounts
from streamer_aggregate.backfill import PendingBackfill, SourceCandle

_INF = float("inf")


class Bucket:
    """One candle being built."""

    __slots__ = (
        "backfilled",
        "close",
        "close_ts",
        "closed",
        "dirty",
        "end",
        "high",
        "low",
        "open",
        "open_ts",
        "partial",
        "pending",
        "skip",
        "start",
        "state",
        "trade_count",
        "turnover",
        "volume",
    )

    def __init__(
        self, state: IntervalState, start: int, ts: int, price: float, size: int,
        turnover: int,
    ) -> None:
        self.state = state
        self.start = start
        # Open and close follow trade time, not arrival order, so a trade that arrives a
        # little out of order (within the waiter window) still lands in the right place.
        self.open_ts = self.close_ts = ts
        self.end = state.end_of(start)
        self.open = self.high = self.low = self.close = price
        #: Exact sums in units of the aggregator's :class:`~streamer_aggregate.amounts.Amounts`.
        self.volume = size
        self.turnover = turnover
        self.trade_count = 1
        self.closed = False
        self.dirty = False
        self.partial = False
        self.skip = False
        self.backfilled = False
        #: What the candle keeps while its history is asked for; ``None`` when not pending.
        self.pending: PendingBackfill | None = None

    def kline(self, closed: bool, amounts: Amounts) -> Kline:
        """The candle as it stands, as the one kind of event it becomes."""
        st = self.state
        group = st.group
        if group is not None and group.trades:
            group.settle()
        return Kline(st.channel, st.symbol, st.ms, self.start, self.open, self.high, self.low,
                     self.close, self.volume / amounts.volume_scale, self.trade_count, closed,
                     self.turnover / amounts.turnover_scale if amounts.turnover else None,
                     self.partial)

    def merge(
        self, candle: SourceCandle, ours_before: tuple[float, float], amounts: Amounts
    ) -> None:
        """Merge the source's candle, which stood as it was at its snapshot, given our
        volume and turnover stamped until then (exact and estimated: backfill.py)."""
        self.open = candle.open
        self.open_ts = self.start
        self.high = max(self.high, candle.high)
        self.low = min(self.low, candle.low)
        if self.close_ts <= candle.snapshot_ms:
            self.close = candle.close
        # Units first: reading them may widen the scale (and this candle's sums with it).
        added = amounts.volume_units(candle.volume) - amounts.volume_units(ours_before[0])
        self.volume += added
        if amounts.turnover:
            added = amounts.turnover_units(candle.turnover) - amounts.turnover_units(
                ours_before[1])
            self.turnover += added

    def add_summary(self, summary: TradeSummary, amounts: Amounts) -> None:
        """Add a stored summary of every trade stamped before ours (none of ours is)."""
        if summary.count:
            assert summary.open and summary.high and summary.low
            self.open = float(summary.open)
            self.open_ts = self.start
            self.high = max(self.high, float(summary.high))
            self.low = min(self.low, float(summary.low))
            self.trade_count += summary.count
        # Units first: reading them may widen the scale (and this candle's sums with it).
        added = amounts.volume_units(summary.volume)
        self.volume += added
        if amounts.turnover:
            added = amounts.turnover_units(summary.turnover)
            self.turnover += added

    def totals(self, amounts: Amounts) -> tuple[float, float]:
        """Volume and turnover as floats (for the backfill's marks)."""
        group = self.state.group
        if group is not None and group.trades:
            group.settle()
        return self.volume / amounts.volume_scale, self.turnover / amounts.turnover_scale


class IntervalState:
    """Candles of one (channel, symbol, interval)."""

    __slots__ = ("buckets", "channel", "cur", "cursor", "group", "held", "interval",
                 "last_close", "months", "ms", "offset", "started", "symbol")

    def __init__(self, channel: str, symbol: str, ms: int) -> None:
        #: The states of the same (channel, symbol), all intervals; set by SymbolCandles.
        self.group: SymbolCandles | None = None
        self.channel = channel
        self.symbol = symbol
        self.interval = interval_of_ms(ms)
        #: The wire length (nominal for months).
        self.ms = ms
        self.months = self.interval.months
        self.offset = self.interval.offset
        #: Open candles, oldest first.
        self.buckets: list[Bucket] = []
        #: The newest open candle when trades may be folded into it directly (not pending).
        self.cur: Bucket | None = None
        #: Every candle starting before this is closed; ``None`` until the first close.
        self.cursor: int | None = None
        self.last_close: float | None = None
        self.started = False
        #: While the source recovers a gap: candles ending after this stay open.
        self.held: int | None = None

    def flat_kline(self, start: int, price: float, turnover: bool) -> Kline:
        """The kline of an interval without trades: every price the previous close."""
        return Kline(self.channel, self.symbol, self.ms, start, price, price, price, price,
                     0.0, 0, True, 0.0 if turnover else None)

    def start_of(self, ts: int) -> int:
        if self.months:
            return self.interval.start(ts)
        return ts - (ts - self.offset) % self.ms

    def end_of(self, start: int) -> int:
        return self.interval.end(start) if self.months else start + self.ms


#: Trade times outside any real one: what the pending open and close start from.
_NO_TS_HIGH = 1 << 62
_NO_TS_LOW = -_NO_TS_HIGH


class SymbolCandles:
    """The :class:`IntervalState` of every interval of one (channel, symbol), and the span of
    trade times that every interval's newest candle takes as is (``lo <= ts < hi``).

    Most trades fall in that span: the aggregator then folds them into the group, not into
    each of ``curs``. What a trade does to a candle is the same for every one of ``curs``, so
    it is kept once here, *pending*: the sums (``volume``, ``turnover``, ``trades``), the
    extremes (``high``, ``low``), the earliest trade (``open`` at ``open_ts``, the first to
    arrive of that time) and the latest (``close`` at ``close_ts``, the last to arrive of
    that time). :meth:`settle` applies them to every one of ``curs`` with the rules a trade
    folded directly follows, so the candles come out the same; it must run before any of
    ``curs`` is read, folded into directly or ``curs`` changes (:meth:`refresh`,
    :meth:`Bucket.kline`, :meth:`Bucket.totals`, the aggregator's slow path and closing
    settle; so does widening the scale). Per trade that is a few slots of one object instead
    of a few per interval.

    ``marked``: the aggregator's flush generation in which every one of ``curs`` was marked
    changed (open-kline updates), so that later trades of the same flush skip the marking;
    :meth:`refresh` forgets it (new ``curs`` may not be marked).

    The span is empty while any interval has no such candle. :meth:`refresh` must follow
    every change of an ``IntervalState.cur``, before any of the old ``curs`` is read.
    """

    __slots__ = ("close", "close_ts", "curs", "hi", "high", "lo", "low", "marked", "open",
                 "open_ts", "states", "trades", "turnover", "volume")

    def __init__(self, states: list[IntervalState]) -> None:
        self.states = states
        self.curs: list[Bucket] = []
        self.lo = 1
        self.hi = 0
        self.marked = -1
        #: What the trades folded here and not yet into ``curs`` make (see the class doc).
        self.volume = self.turnover = self.trades = 0
        self.high = -_INF
        self.low = _INF
        self.open = self.close = 0.0
        self.open_ts = _NO_TS_HIGH
        self.close_ts = _NO_TS_LOW
        for st in states:
            st.group = self

    def settle(self) -> None:
        """Apply what is pending here to every one of ``curs``."""
        if self.trades:
            volume, turnover, trades = self.volume, self.turnover, self.trades
            high, low = self.high, self.low
            open_ts, close_ts = self.open_ts, self.close_ts
            for b in self.curs:
                b.volume += volume
                b.turnover += turnover
                b.trade_count += trades
                if high > b.high:
                    b.high = high
                if low < b.low:
                    b.low = low
                # As a trade folded directly: at a tie the later arrival closes, the
                # earlier one opens (the pending ones arrived after what the candle has).
                if close_ts >= b.close_ts:
                    b.close = self.close
                    b.close_ts = close_ts
                if open_ts < b.open_ts:
                    b.open = self.open
                    b.open_ts = open_ts
            self.volume = self.turnover = self.trades = 0
            self.high = -_INF
            self.low = _INF
            self.open_ts = _NO_TS_HIGH
            self.close_ts = _NO_TS_LOW

    def refresh(self) -> None:
        # What is pending belongs to the candles that were ``curs`` when it came.
        self.settle()
        self.marked = -1
        curs = [st.cur for st in self.states if st.cur is not None]
        if len(curs) < len(self.states):
            self.curs, self.lo, self.hi = [], 1, 0
            return
        self.curs = curs
        self.lo = max(b.start for b in curs)
        self.hi = min(b.end for b in curs)
