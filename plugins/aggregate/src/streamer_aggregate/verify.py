"""``klines.verify``: check the klines we build from trades against the exchange's own.

Inputs: a ``klines.from_trades`` transform and the source whose candles are the reference.
The two are told apart by what they are, not where they come from (a transform's
``process`` is not told its input): a kline built from trades always has a ``trade_count``;
an exchange's kline stream has none (Bybit does not send it). Only closed, non-partial
candles are compared.

Each built candle is matched with the reference candle of the same channel, symbol,
interval and start from the source's kline stream, whichever arrives first. A built candle
whose reference has not come ``reference_wait_s`` after the candle's end (its kline stream
is not subscribed, or lost that confirm) is looked up in the input source's history
(:mod:`streamer.history`, ``context.history``) instead: one worker per symbol at a time, at
most :data:`HISTORY_CONCURRENCY` symbols at once, a symbol's due candles planned into as few
``candles`` calls as the source allows (:func:`streamer_aggregate.backfill.plan`, shared
with the first-candle backfill), each call bounded by ``history_timeout_s``; the source
paces its own requests. Only when the history cannot answer (no source offers one, it has no
such interval, it failed or timed out, it has no such candle) is the candle counted
``no_reference``, with the cause counted and logged apart.

Then open, high, low and close are compared with a relative ``tolerance``, volume (and
turnover when both have it) exactly: ours are the exact decimal sums of the trades
(:mod:`streamer_aggregate.amounts`), the exchange's are its decimal strings, and the nearest
floats of two equal decimals are equal. A mismatch is counted per symbol and interval
(``mismatch.<symbol>.<interval>``) and per field (``mismatch_field.<field>``), logged
(rate-limited per symbol and interval) with both values, and, with ``emit = "mismatches"``
or ``"all"``, sent downstream as a ``kline_check`` event.

Memory is bounded: a reference candle waiting for its built partner is given up
(``unmatched_reference``) once a candle two intervals newer of the same series has been
seen; a built candle waits until its deadline, then for its history answer; a reference
arriving for a candle already decided is dropped (``late_reference``); and beyond
``max_pending`` waiting candles in all a new one is not kept (``pending_full``).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import trio

from streamer import Context, Emit, Event, Kline, RateLimitedLog, clock
from streamer.history import History, HistoryError, HistoryUnavailable
from streamer.intervals import interval_label, interval_of_ms
from streamer_aggregate.backfill import BackfillRequest, CandleAsk, candle_from, plan
from streamer_aggregate.config import VerifyConfig
from streamer_aggregate.kline_check import FIELDS, KlineCheck, differs

Series = tuple[str, str, int]  # channel, symbol, interval

#: Compared exactly, whatever the tolerance.
EXACT_FIELDS = frozenset({"volume"})

#: Symbols queued for a history check between the timer and the worker; beyond this their
#: due candles count ``history_dropped`` (and ``no_reference``).
HISTORY_QUEUE = 10_000
#: Symbols whose history is asked for at once.
HISTORY_CONCURRENCY = 8
_FAILURE_LOG_EVERY_S = 30.0


class KlineVerify:
    """Matches built klines with reference klines and reports the differences."""

    def __init__(self, config: VerifyConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.metrics = context.metrics
        self.log = RateLimitedLog(context.logger)
        self._failure_log = RateLimitedLog(context.logger, _FAILURE_LOG_EVERY_S)
        self._wait_ms = int(config.reference_wait_s * 1000)
        #: (channel, symbol, interval) -> start -> (is_built, kline) waiting for a partner
        self.pending: dict[Series, dict[int, tuple[bool, Kline]]] = {}
        #: Candles waiting (for a partner or a history answer) in all.
        self.pending_count = 0
        #: series the reference stream has carried
        self.referenced: set[Series] = set()
        #: series -> newest start seen (either side)
        self.newest: dict[Series, int] = {}
        #: series -> newest start decided (compared or given up): later references are late
        self.decided: dict[Series, int] = {}
        #: (deadline ms, order, kline) of built candles; stale once their partner came
        self._deadlines: list[tuple[int, int, Kline]] = []
        self._order = 0
        #: Wakes the timer when a new deadline is earlier than the one it sleeps for.
        self._wake = trio.Event()
        self._ask_send, self._ask_receive = trio.open_memory_channel[tuple[str, str]](
            HISTORY_QUEUE)
        #: (channel, symbol) -> its due built candles not yet asked for; a key is queued once.
        self._asks: dict[tuple[str, str], list[Kline]] = {}

    # -- inline ------------------------------------------------------------------------------

    def process(self, batch: Sequence[Event]) -> list[Event]:
        # KlineCheck is not one of the core's event types, but renders like one.
        out: list[Any] = []
        for k in batch:
            if k.__class__ is not Kline:
                continue
            assert isinstance(k, Kline)
            if not k.closed or k.partial:
                continue
            self._add(k, k.trade_count is not None, out)
        return out

    def _add(self, k: Kline, built: bool, out: list[Any]) -> None:
        series = (k.channel, k.symbol, k.interval)
        if not built:
            self.referenced.add(series)
        waiting = self.pending.get(series)
        if waiting is None:
            waiting = self.pending[series] = {}
        newest = self.newest.get(series)
        if newest is None or k.timestamp > newest:
            self.newest[series] = k.timestamp
            # Built candles leave by their deadline; references only wait this long.
            before = k.timestamp - 2 * k.interval
            for start in [s for s, (b, _) in waiting.items() if s < before and not b]:
                del waiting[start]
                self.pending_count -= 1
                self.metrics.inc("unmatched_reference")
        other = waiting.get(k.timestamp)
        if other is None:
            if not built and k.timestamp <= self.decided.get(series, -1):
                self.metrics.inc("late_reference")  # its built candle was decided already
                return
            if self.pending_count >= self.config.max_pending or (
                    built and not self._deadline_room()):
                self.metrics.inc("pending_full")
                return
            waiting[k.timestamp] = (built, k)
            self.pending_count += 1
            if built:
                self._add_deadline(k)
            return
        if other[0] == built:
            self.metrics.inc("duplicates")  # a repeated confirm: the first one counts
            return
        del waiting[k.timestamp]
        self.pending_count -= 1
        self._decided(series, k.timestamp)
        ours, ref = (k, other[1]) if built else (other[1], k)
        self._compare(ours, ref, out)

    def _decided(self, series: Series, start: int) -> None:
        if start > self.decided.get(series, -1):
            self.decided[series] = start

    def _deadline_room(self) -> bool:
        """Whether one more deadline fits; drops those of candles matched meanwhile first."""
        heap = self._deadlines
        if len(heap) < self.config.max_pending:
            return True
        heap[:] = [entry for entry in heap if self._is_waiting(entry[2])]
        heapq.heapify(heap)
        return len(heap) < self.config.max_pending

    def _is_waiting(self, k: Kline) -> bool:
        waiting = self.pending.get((k.channel, k.symbol, k.interval))
        entry = None if waiting is None else waiting.get(k.timestamp)
        return entry is not None and entry[1] is k

    def _add_deadline(self, k: Kline) -> None:
        deadline = interval_of_ms(k.interval).end(k.timestamp) + self._wait_ms
        self._order += 1
        heapq.heappush(self._deadlines, (deadline, self._order, k))
        if self._deadlines[0][2] is k:
            self._wake.set()

    def _compare(self, ours: Kline, ref: Kline, out: list[Any]) -> None:
        tol = self.config.tolerance
        a = tuple(float(getattr(ours, f)) for f in FIELDS)
        b = tuple(float(getattr(ref, f)) for f in FIELDS)
        # Prices within the tolerance; volume and turnover, exact sums on both sides, exactly.
        bad = [f for f, x, y in zip(FIELDS, a, b, strict=True)
               if (x != y if f in EXACT_FIELDS else differs(x, y, tol))]
        if ours.turnover is not None and ref.turnover is not None and \
                ours.turnover != ref.turnover:
            bad.append("turnover")
        self.metrics.inc("checked")
        label = interval_label(ours.interval)
        if bad:
            self.metrics.inc(f"mismatch.{ours.symbol}.{label}")
            self.metrics.inc("mismatches")
            for f in bad:
                self.metrics.inc(f"mismatch_field.{f}")
            details = "; ".join(
                f"{f} ours {getattr(ours, f)!r} reference {getattr(ref, f)!r}" for f in bad)
            self.log.warning(
                f"mismatch.{ours.channel}.{ours.symbol}.{label}",
                "kline mismatch %s %s %s at %d: %s",
                ours.channel, ours.symbol, label, ours.timestamp, details)
        else:
            self.metrics.inc("matched")
        emit = self.config.emit
        if emit == "all" or (emit == "mismatches" and bad):
            out.append(KlineCheck(ours.channel, ours.symbol, ours.interval, ours.timestamp,
                                  not bad, ",".join(bad), a, b))

    # -- background --------------------------------------------------------------------------

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._history_worker, emit)
            task_status.started()
            await self._timer()

    async def _timer(self) -> None:
        """Sleeps until the next built candle's deadline (on :mod:`streamer.clock`, so a
        replay's recorded time drives it too), then hands the due ones to the history."""
        while True:
            self._wake = trio.Event()
            heap = self._deadlines
            while heap and not self._is_waiting(heap[0][2]):
                heapq.heappop(heap)  # matched meanwhile
            if not heap:
                await self._wake.wait()
                continue
            due_ms = heap[0][0]
            with trio.move_on_at(clock.trio_time_at(due_ms / 1000)) as sleeping:
                await self._wake.wait()
            if sleeping.cancelled_caught:
                # The float round trip through the clock offset can read 1 ms early.
                self.take_due(max(clock.now_ms(), due_ms))

    def take_due(self, now_ms: int) -> None:
        """Built candles whose deadline is ``now_ms`` or earlier stop waiting for the kline
        stream and are queued for the source's history."""
        heap = self._deadlines
        while heap and heap[0][0] <= now_ms:
            _, _, k = heapq.heappop(heap)
            if not self._is_waiting(k):
                continue
            series = (k.channel, k.symbol, k.interval)
            del self.pending[series][k.timestamp]
            self._decided(series, k.timestamp)
            if self.context.history.for_channel(k.channel) is None:
                self.pending_count -= 1
                self._no_history(k)
                continue
            key = (k.channel, k.symbol)
            queued = self._asks.get(key)
            if queued is not None:
                queued.append(k)
                continue
            try:
                self._ask_send.send_nowait(key)
            except trio.WouldBlock:
                self.pending_count -= 1
                self._unanswered(k, "history_dropped", "too many symbols queued")
                continue
            self._asks[key] = [k]

    def _no_history(self, k: Kline) -> None:
        series = (k.channel, k.symbol, k.interval)
        if series in self.referenced:
            self.metrics.inc("unmatched_built")  # the stream lost this one confirm
            return
        self.metrics.inc("no_reference")
        self._failure_log.warning(
            f"no_history.{k.channel}", "no reference for %s %s %s: the kline stream does "
            "not carry it and no input source of channel %r answers history requests",
            k.channel, k.symbol, interval_label(k.interval), k.channel)

    def _unanswered(self, k: Kline, cause: str, detail: str) -> None:
        self.metrics.inc("no_reference")
        self.metrics.inc(cause)
        self._failure_log.warning(
            f"{cause}.{k.channel}", "no reference for %s %s %s at %d: %s (%s)", k.channel,
            k.symbol, interval_label(k.interval), k.timestamp, cause, detail)

    async def _history_worker(self, emit: Emit) -> None:
        limiter = trio.CapacityLimiter(HISTORY_CONCURRENCY)
        async with trio.open_nursery() as nursery:
            async for key in self._ask_receive:
                await limiter.acquire_on_behalf_of(key)
                built = self._asks.pop(key, [])
                nursery.start_soon(self._check_symbol, key, built, emit, limiter)

    async def _check_symbol(
        self, key: tuple[str, str], built: list[Kline], emit: Emit,
        limiter: trio.CapacityLimiter,
    ) -> None:
        out: list[Any] = []
        try:
            await self.check_with_history(key[0], key[1], built, out)
        finally:
            limiter.release_on_behalf_of(key)
        if out:
            await emit(out)

    async def check_with_history(
        self, channel: str, symbol: str, built: list[Kline], out: list[Any]
    ) -> None:
        """Compare ``built`` (one symbol's due candles) with the source's history; appends
        the checks to emit to ``out``. Never raises for a failed answer."""
        history = self.context.history.for_channel(channel)
        assert history is not None  # take_due queues only channels with a history
        by_start = {(k.interval, k.timestamp): k for k in built}
        requests = [BackfillRequest(channel, symbol, k.interval, k.timestamp) for k in built]
        asks, unanswerable = plan(requests, history.candle_intervals, history.max_candles,
                                  clock.now_ms())
        for request in unanswerable:
            self.pending_count -= 1
            self._unanswered(by_start[(request.interval, request.start)],
                             "history_unavailable",
                             f"no candles of the source build {interval_label(request.interval)}")
        async with trio.open_nursery() as nursery:
            for ask in asks:
                nursery.start_soon(self._check_ask, history, channel, symbol, ask, by_start, out)

    async def _check_ask(
        self, history: History, channel: str, symbol: str, ask: CandleAsk,
        by_start: dict[tuple[int, int], Kline], out: list[Any],
    ) -> None:
        candles = None
        cause = detail = ""
        with trio.move_on_after(self.config.history_timeout_s) as waiting:
            try:
                candles = await history.candles(
                    channel, symbol, ask.base.ms, ask.since, limit=ask.limit(clock.now_ms()))
            except HistoryUnavailable as exc:
                cause, detail = "history_unavailable", str(exc)
            except HistoryError as exc:
                cause, detail = "history_failed", str(exc)
        if waiting.cancelled_caught:
            cause = "history_timeout"
            detail = f"no answer within {self.config.history_timeout_s} s"
        for request in ask.requests:
            k = by_start[(request.interval, request.start)]
            self.pending_count -= 1
            if candles is None:
                self._unanswered(k, cause, detail)
                continue
            candle = candle_from(candles, interval_of_ms(k.interval), k.timestamp)
            if candle is None:
                if k.volume == 0:
                    self.metrics.inc("matched_empty")  # no trades on either side
                else:
                    self._unanswered(k, "history_missing", "the source has no such candle")
                continue
            self.metrics.inc("history_checked")
            ref = Kline(channel, symbol, k.interval, k.timestamp, candle.open, candle.high,
                        candle.low, candle.close, candle.volume, None,
                        turnover=candle.turnover)
            self._compare(k, ref, out)


__all__ = ["FIELDS", "HISTORY_CONCURRENCY", "KlineCheck", "KlineVerify"]
