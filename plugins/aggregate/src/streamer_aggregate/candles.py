"""The state of candles being built: one :class:`Bucket` per open candle, one
:class:`IntervalState` per (channel, symbol, interval). Plain slotted objects: the
aggregator's hot path reads and writes their attributes directly."""

from __future__ import annotations

from streamer.intervals import interval_of_ms
from streamer_aggregate.backfill import PendingBackfill


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
        self, state: IntervalState, start: int, ts: int, price: float, size: float
    ) -> None:
        self.state = state
        self.start = start
        # Open and close follow trade time, not arrival order, so a trade that arrives a
        # little out of order (within the waiter window) still lands in the right place.
        self.open_ts = self.close_ts = ts
        self.end = state.end_of(start)
        self.open = self.high = self.low = self.close = price
        self.volume = size
        self.turnover = price * size
        self.trade_count = 1
        self.closed = False
        self.dirty = False
        self.partial = False
        self.skip = False
        self.backfilled = False
        #: What the candle keeps while its history is asked for; ``None`` when not pending.
        self.pending: PendingBackfill | None = None


class IntervalState:
    """Candles of one (channel, symbol, interval)."""

    __slots__ = ("buckets", "channel", "cur", "cursor", "held", "interval", "last_close",
                 "months", "ms", "offset", "started", "symbol")

    def __init__(self, channel: str, symbol: str, ms: int) -> None:
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

    def start_of(self, ts: int) -> int:
        if self.months:
            return self.interval.start(ts)
        return ts - (ts - self.offset) % self.ms

    def end_of(self, start: int) -> int:
        return self.interval.end(start) if self.months else start + self.ms
