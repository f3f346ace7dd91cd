"""``klines.from_trades``: the KlineAggregator wired into the pipeline.

``process`` runs inline on the source's task (trades in, klines that closed out). ``run``
hosts the two time-driven parts:

- a timer that closes candles at ``boundary + waiter_latency_ms`` (waiter mode) or at the
  boundary (no waiter), sleeping with ``trio.sleep_until`` on the wall clock of
  :mod:`streamer.clock`, with ``updates = "throttled"`` flushes open klines every
  ``update_interval_ms``, and gives up on first candles whose history is overdue;
- the first-candle backfill, fed by ``process`` through a small channel so that ``process``
  never waits on the network: one worker per symbol at a time, at most
  :data:`BACKFILL_CONCURRENCY` symbols at once. It asks first the stored history of the
  sinks that store the input (``context.history.stored``: every trade from the candle's
  open to our first one, answered only when the store holds them all; exact), for at most
  half of ``backfill_timeout_s``; what they do not know it asks the input source's history
  (:mod:`streamer.history`, ``context.history``), with all of a symbol's requests planned
  into as few calls as the source allows (:func:`streamer_aggregate.backfill.plan`). The
  source paces and rate-limits its own requests. The transform knows no exchange.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from streamer import Context, Emit, Event, RateLimitedLog, StreamGap, clock
from streamer.history import History, HistoryError, HistoryUnavailable
from streamer.intervals import interval_of_ms
from streamer_aggregate.aggregator import FirstCandle, KlineAggregator, Updates
from streamer_aggregate.backfill import (
    BackfillRequest,
    CandleAsk,
    candle_from,
    plan,
    trades_in,
)
from streamer_aggregate.config import KlineConfig
from streamer_aggregate.delisting import end_symbols

#: Symbols queued for backfill between ``process`` and the backfill worker; beyond this their
#: first candles are marked partial at once instead of blocking the source.
BACKFILL_QUEUE = 10_000
#: Symbols whose history is asked for at once.
BACKFILL_CONCURRENCY = 8
_FAILURE_LOG_EVERY_S = 30.0

class KlineTransform:
    """Trades -> klines, per channel, symbol and configured interval."""

    def __init__(self, config: KlineConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.waiter_ms = config.waiter_latency_ms if config.waiter else 0
        updates: Updates = config.updates
        first: FirstCandle = config.first_candle
        self.aggregator = KlineAggregator(
            config.interval_ms,
            waiter_ms=self.waiter_ms,
            updates=updates,
            fill_gaps=config.fill_gaps,
            turnover=config.turnover,
            first_candle=first,
            backfill_deadline_ms=int(config.backfill_timeout_s * 1000),
            metrics=context.metrics,
            logger=context.logger,
        )
        self._intervals = [interval_of_ms(ms) for ms in config.interval_ms]
        self._backfill_send, self._backfill_receive = trio.open_memory_channel[
            tuple[str, str]](BACKFILL_QUEUE)
        #: (channel, symbol) -> its requests not yet asked for; a key is queued once.
        self._wanted: dict[tuple[str, str], list[BackfillRequest]] = {}
        #: Channels / reasons already logged once: "cannot answer" is said once, not per symbol.
        self._told: set[str] = set()
        self._failure_log = RateLimitedLog(context.logger, _FAILURE_LOG_EVERY_S)
        #: Wakes the timer when a new backfill deadline may be earlier than its sleep.
        self._deadline_changed = trio.Event()

    # -- inline ----------------------------------------------------------------------------

    def process(self, batch: Sequence[Event]) -> list[Event]:
        agg = self.aggregator
        out: list[Event] = list(agg.add_trades(batch))
        if not agg.backfill_requested:  # the usual batch: no clock read (a run-local lookup)
            return out
        requests = agg.take_backfill_requests(clock.now_ms())
        self._deadline_changed.set()
        for request in requests:
            key = (request.channel, request.symbol)
            queued = self._wanted.get(key)
            if queued is not None:
                queued.append(request)
                continue
            try:
                self._backfill_send.send_nowait(key)
            except trio.WouldBlock:
                self.context.metrics.inc("backfill_dropped")
                out.extend(agg.apply_backfill(request, None))
                continue
            self._wanted[key] = [request]
        return out

    def on_gap(self, gap: StreamGap) -> list[Event]:
        """A source lost (``closed=False``) or recovered its stream: hold, or release and
        close what is now due. Gaps of other streams (an order book's) are not its concern."""
        if gap.data_type != "trades":
            return []
        agg = self.aggregator
        if gap.ended:  # delisted: close its candles now, forget it
            return list(end_symbols(agg, gap.channel, gap.symbols))
        if gap.data_type != "trades":  # candles come from trades: other gaps do not matter
            return []
        if not gap.closed:
            if self.config.gap_hold_s > 0:
                deadline = clock.now_ms() + int(self.config.gap_hold_s * 1000)
                agg.holds.hold(gap.channel, gap.symbols, gap.since_ms, deadline)
            return []
        agg.holds.release(gap.channel, gap.symbols, gap.complete)
        return list(agg.close_due(clock.now_ms()))

    # -- background --------------------------------------------------------------------------

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.backfill_worker, emit)
            task_status.started()
            await self._timer(emit)

    def next_close_ms(self, now_ms: int) -> int:
        """Wall time (ms) of the next moment a candle of some interval is due to close, a gap
        hold gives up, or a first candle stops waiting for its history."""
        w = self.waiter_ms
        due = min(iv.next_boundary(now_ms - w) + w for iv in self._intervals)
        agg = self.aggregator
        for deadline in (agg.holds.next_deadline(), agg.next_backfill_deadline()):
            if deadline is not None:
                due = max(now_ms, min(due, deadline))
        return due

    async def _timer(self, emit: Emit) -> None:
        agg = self.aggregator
        throttled = self.config.updates == "throttled"
        flush_every_s = self.config.update_interval_ms / 1000
        next_flush = trio.current_time() + flush_every_s
        while True:
            self._deadline_changed = trio.Event()
            close_at_ms = self.next_close_ms(clock.now_ms())
            wake = clock.trio_time_at(close_at_ms / 1000)
            if throttled and next_flush < wake:
                await trio.sleep_until(next_flush)
                next_flush += flush_every_s
                out: list[Event] = list(agg.flush_updates())
            else:
                with trio.move_on_at(wake) as sleeping:
                    await self._deadline_changed.wait()
                if not sleeping.cancelled_caught:
                    continue  # a first candle now waits: its deadline may come first
                # The float round trip through the clock offset can read 1 ms early; we
                # know we slept until close_at_ms.
                out = list(agg.close_due(max(clock.now_ms(), close_at_ms)))
                if throttled and trio.current_time() >= next_flush:
                    next_flush = trio.current_time() + flush_every_s
                    out.extend(agg.flush_updates())
            if out:
                await emit(out)

    async def backfill_worker(self, emit: Emit) -> None:
        limiter = trio.CapacityLimiter(BACKFILL_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            async for key in self._backfill_receive:
                await limiter.acquire_on_behalf_of(key)
                requests = self._wanted.pop(key, [])
                nursery.start_soon(self._backfill_symbol, key, requests, emit, limiter)

    async def _backfill_symbol(
        self, key: tuple[str, str], requests: list[BackfillRequest], emit: Emit,
        limiter: trio.CapacityLimiter,
    ) -> None:
        try:
            out = await self.backfill(key[0], key[1], requests)
        finally:
            limiter.release_on_behalf_of(key)
        if out:
            await emit(out)

    async def backfill(
        self, channel: str, symbol: str, requests: list[BackfillRequest]
    ) -> list[Event]:
        """Ask the input source's history for ``requests`` (one symbol) and merge the answers;
        returns the open klines to emit now. Never raises for a failed answer."""
        agg = self.aggregator
        out: list[Event] = []
        # Candles that gave up while queued need nothing any more.
        requests = [r for r in requests if agg.waiting(r)]
        if requests and self.context.history.stored:
            requests = await self._backfill_stored(channel, symbol, requests, out)
        if not requests:
            return out
        history = self.context.history.for_channel(channel)
        if history is None:
            self._tell(channel, "no input source of channel %r answers history requests; "
                       "first candles are emitted flagged partial", channel)
            for request in requests:
                out.extend(agg.apply_backfill(request, None))
            return out
        asks, by_trades = plan(requests, history.candle_intervals, history.max_candles,
                               clock.now_ms())
        with trio.move_on_after(self.config.backfill_timeout_s):
            async with trio.open_nursery() as nursery:
                for ask in asks:
                    nursery.start_soon(self._backfill_candles, history, channel, symbol, ask,
                                       out)
                if by_trades:
                    nursery.start_soon(self._backfill_trades, history, channel, symbol,
                                       by_trades, out)
        # Whatever did not come in time: the aggregator's deadline marks it partial.
        return out

    async def _backfill_stored(
        self, channel: str, symbol: str, requests: list[BackfillRequest], out: list[Event]
    ) -> list[BackfillRequest]:
        """Complete what the sinks' stored histories know (exactly), all of a symbol's
        requests in one question per store; the requests left for the source."""
        left = [r for r in requests if r.until is not None]
        with trio.move_on_after(self.config.backfill_timeout_s / 2):
            for stored in self.context.history.stored:
                if not left:
                    break
                ranges = [(r.start, r.until) for r in left if r.until is not None]
                try:
                    answers = await stored.trades_summaries(channel, symbol, ranges)
                    if len(answers) != len(ranges):
                        raise HistoryError(f"{len(answers)} answers to {len(ranges)} ranges")
                except HistoryError as exc:
                    self.context.metrics.inc("stored_history_failed")
                    self._failure_log.warning(
                        "stored", "stored history of %s %s failed: %s; asking the source",
                        channel, symbol, exc)
                    continue
                unknown = []
                for request, summary in zip(left, answers, strict=True):
                    if summary is None:
                        unknown.append(request)
                    else:
                        out.extend(self.aggregator.apply_summary(request, summary))
                left = unknown
        return left + [r for r in requests if r.until is None]

    async def _backfill_candles(
        self, history: History, channel: str, symbol: str, ask: CandleAsk, out: list[Event]
    ) -> None:
        candles = await self._ask(history.candles(
            channel, symbol, ask.base.ms, ask.since, limit=ask.limit(clock.now_ms())),
            channel, symbol, f"{ask.base.label} candles")
        for request in ask.requests:
            candle = None if candles is None else candle_from(
                candles, interval_of_ms(request.interval), request.start)
            out.extend(self.aggregator.apply_backfill(request, candle))

    async def _backfill_trades(
        self, history: History, channel: str, symbol: str, requests: list[BackfillRequest],
        out: list[Event],
    ) -> None:
        since = min(r.start for r in requests)
        recent = await self._ask(history.trades_since(channel, symbol, since),
                                 channel, symbol, "recent trades")
        for request in requests:
            if recent is None:
                out.extend(self.aggregator.apply_backfill(request, None))
            else:
                end = interval_of_ms(request.interval).end(request.start)
                out.extend(self.aggregator.apply_trades(
                    request, trades_in(recent.trades, request.start, end), recent.complete))

    async def _ask(self, answer: Any, channel: str, symbol: str, what: str) -> Any:
        try:
            return await answer
        except HistoryUnavailable as exc:
            self._tell(f"{channel}:{exc}", "the %s source cannot answer for %s (%s); those "
                       "first candles are emitted flagged partial", channel, what, exc)
        except HistoryError as exc:
            self.context.metrics.inc("backfill_failed")
            self._failure_log.warning(
                "failed", "history of %s %s (%s) failed: %s; its first candles are emitted "
                "flagged partial", channel, symbol, what, exc)
        return None

    def _tell(self, key: str, msg: str, *args: object) -> None:
        if key not in self._told and len(self._told) < 1000:
            self._told.add(key)
            self.context.logger.warning(msg, *args)

