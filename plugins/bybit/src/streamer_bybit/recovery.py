"""Gap recovery of one Bybit connection: the trades missed while it was reconnecting.

When a session ends, the connection reports a :class:`~streamer.StreamGap` (so klines
wait). The next session snapshots, per symbol, the newest trade delivered (its *mark*), and
holds that symbol's live trades from the resubscribe on; every other event flows at once.
Per symbol, REST recent-trade is asked (bounded concurrency, retried with backoff) until one
answer covers the whole gap: it reaches *back* to the mark and *forward* to the first live
trade held (Bybit's REST list may lag its WebSocket by seconds, so an answer that only
reaches back can miss the newest trades). The rows strictly between mark and first live
trade are emitted, then the held live trades, in order; the symbol then streams directly.

Bounds: a recovery ends ``deadline`` seconds after the resubscribe. A symbol not covered by
then is released with a ``trade gap`` warning (time range and an estimate of the trades
missing, ``trade_gaps``) and the gap closes ``complete=False``. At most ``max_held`` live
trades are held per connection: past it, the held trades are emitted at once and the
recovered ones follow as soon as they are found (still before the gap closes, so klines stay
exact; the order of those trades is then by arrival, counted in ``recovery_hold_overflows``).
A symbol with no live trade since the resubscribe cannot be checked forward; it is taken as
covered by an answer asked at least ``rest_lag_max`` seconds after the resubscribe.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import trio

from streamer import Emit, Event, Metrics, RateLimitedLog, StreamGap, Trade
from streamer.clock import now_ms
from streamer.net import HttpError
from streamer_bybit.coverage import (
    Coverage,
    RecoveryMark,
    TradeWindow,
    coverage,
    trade_from_rest,
)
from streamer_bybit.rest import RECENT_TRADES_MAX, BybitRest, BybitRestError

if TYPE_CHECKING:
    from streamer_bybit.capture import CaptureTap

#: Everything a REST call can raise for "the endpoint is not usable right now": network,
#: timeout, HTTP status, Bybit retCode, and TLS trouble (trio wraps SSL errors of an open
#: stream in BrokenResourceError).
REST_ERRORS = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    HttpError,
    BybitRestError,
    ssl.SSLError,
)
#: Concurrent recent-trade requests per connection (Bybit: 600 requests per 5 s per IP).
REST_CONCURRENCY = 8
RETRY_INITIAL = 0.25
RETRY_MAX = 4.0
EMIT_GRACE = 5.0  # seconds a recovered batch may take to emit once the session is ending


@attrs.define(frozen=True)
class RecoverySettings:
    #: Seconds after the resubscribe by which every symbol is recovered or reported.
    deadline: float = 30.0
    #: Live trades held per connection while recovering, at most.
    max_held: int = 20_000
    #: A symbol without live trades counts as covered by an answer asked this long after
    #: the resubscribe (the longest lag of REST behind the WebSocket that is assumed).
    rest_lag_max: float = 5.0
    #: Seconds one REST request may take (capped by what is left of the deadline).
    request_timeout: float = 10.0


def describe(exc: BaseException) -> str:
    """``Type: message``, or a sentence for errors whose message is empty."""
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc)
    name = type(exc).__name__
    if not text and exc.__cause__ is not None:
        text = describe(exc.__cause__)
    return f"{name}: {text}" if text else name


class _Pending:
    """A symbol being recovered."""

    __slots__ = ("first_live", "held", "holding", "mark")

    def __init__(self, mark: RecoveryMark) -> None:
        self.mark = mark
        self.first_live: Trade | None = None
        self.held: list[Trade] = []
        self.holding = True


class GapRecovery:
    """Recovers the trades one connection missed; see the module doc."""

    def __init__(
        self,
        channel: str,
        trade_symbols: Iterable[str],
        rest: BybitRest | None,
        settings: RecoverySettings,
        emit: Emit,
        *,
        metrics: Metrics,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self.channel = channel
        self.trade_symbols = tuple(trade_symbols)
        self.rest = rest
        self.settings = settings
        self.emit = emit
        self.metrics = metrics
        self.logger = logger
        self.name = name
        self.windows: dict[str, TradeWindow] = {}
        self._pending: dict[str, _Pending] = {}
        #: After a quiet symbol was recovered: live trades it covers are duplicates.
        self._dedupe: dict[str, TradeWindow] = {}
        self.held_count = 0
        #: Set while ``run`` may emit concurrently with the reader (then emits take the lock,
        #: so a symbol's recovered trades and its later live ones cannot overtake each other).
        self.running = False
        self._lock = trio.Lock()
        self._overflow = False
        self._limiter = trio.CapacityLimiter(REST_CONCURRENCY)
        self._gap_since: int | None = None  # newest trade before the loss, while a gap is open
        self._gap_lost = False  # a trade gap was reported during this gap
        self._recovered = 0  # trades recovered by the current run
        #: Set by the capture (``capture_dir``): told what it holds, recovers and reports.
        self.capture: CaptureTap | None = None
        self._retries = 0  # requests of the current run asked again
        self._bad_answers = RateLimitedLog(logger)

    # ----------------------------------------------------------------- bookkeeping
    def on_trades(self, events: list[Event]) -> None:
        """The decoder read ``events`` (one read's; the trades of a symbol being held are
        noted on release, the other events are not trades)."""
        pending = self._pending
        windows = self.windows
        for t in events:
            if t.__class__ is not Trade:
                continue
            symbol = t.symbol
            if pending:
                p = pending.get(symbol)
                if p is not None and p.holding:
                    continue
            window = windows.get(symbol)
            if window is None:
                window = windows[symbol] = TradeWindow()
            window.note(t)

    @property
    def intercepting(self) -> bool:
        """Live events must go through :meth:`pass_live`."""
        return bool(self._pending) or bool(self._dedupe)

    def begin(self) -> None:
        """A new session after a lost one: hold the live trades of every symbol traded so far
        until it is recovered."""
        self._dedupe.clear()
        if self.rest is not None:
            for symbol, window in self.windows.items():
                if symbol not in self._pending:  # else: kept from a session lost mid-recovery
                    self._pending[symbol] = _Pending((window.newest_ts, window.ids()))
        if self.capture is not None:
            self.capture.holding(list(self._pending), self.settings.max_held)

    def _split(self, events: list[Event]) -> list[Event]:
        """Hold the trades of symbols being recovered, drop duplicates; the rest go on."""
        pending, dedupe = self._pending, self._dedupe
        out: list[Event] = []
        held = 0
        for e in events:
            if e.__class__ is Trade:
                p = pending.get(e.symbol)
                if p is not None:
                    if p.first_live is None:
                        p.first_live = e
                    if p.holding:
                        p.held.append(e)
                        held += 1
                        continue
                elif dedupe:
                    window = dedupe.get(e.symbol)
                    if window is not None:
                        if window.covers(e):
                            self.metrics.inc("duplicate_trades")
                            continue
                        del dedupe[e.symbol]
            out.append(e)
        self.held_count += held
        if self.held_count > self.settings.max_held:
            self._overflow = True
        return out

    async def pass_live(self, events: list[Event]) -> None:
        """Emit live ``events`` read while recovering (see :attr:`intercepting`)."""
        now = self._split(events)
        if not self.running:  # the only emitter: no lock needed
            if self._overflow:
                now = self._release_held() + now
            if now:
                await self.emit(now)
            return
        async with self._lock:
            if self._overflow:
                now = self._release_held() + now
            if now:
                await self.emit(now)

    def _release_held(self) -> list[Event]:
        """Over ``max_held``: stop holding; the held trades go now, recovered ones later."""
        self._overflow = False
        out: list[Event] = []
        for symbol, p in self._pending.items():
            if p.holding:
                p.holding = False
                if p.held:
                    self._note(symbol, p.held)
                    out.extend(p.held)
                    p.held = []
        self.metrics.inc("recovery_hold_overflows")
        self.logger.warning(
            "%s: recovery held more than %d live trades; emitting them now, the recovered "
            "trades follow as they are found",
            self.name,
            self.settings.max_held,
        )
        self.held_count = 0
        return out

    def _note(self, symbol: str, trades: list[Trade]) -> None:
        window = self.windows.get(symbol)
        if window is None:
            window = self.windows[symbol] = TradeWindow()
        window.add(trades)

    # ----------------------------------------------------------------- stream gaps
    async def open_gap(self) -> None:
        """Tell downstream transforms that trades after the last one delivered may be
        missing until the next session has recovered them (klines wait for them)."""
        if self._gap_since is not None or not self.trade_symbols:
            return
        self._gap_since = min((w.newest_ts for w in self.windows.values()), default=now_ms())
        self._gap_lost = False
        gap = StreamGap(self.channel, self.trade_symbols, self._gap_since)
        if self.capture is not None:
            self.capture.gap(gap)
        await self.emit.gap(gap)

    async def close_gap(self) -> None:
        if self._gap_since is None:
            return
        since, self._gap_since = self._gap_since, None
        # Without REST, whatever traded during the outage is gone.
        lost = self._gap_lost or (self.rest is None and bool(self.windows))
        gap = StreamGap(self.channel, self.trade_symbols, since, closed=True, complete=not lost)
        if self.capture is not None:
            self.capture.gap(gap)
        await self.emit.gap(gap)

    # ----------------------------------------------------------------- recovering
    async def run(self) -> None:
        """Recover every held symbol, then close the stream gap."""
        if self._pending:
            started = trio.current_time()
            deadline_at = started + self.settings.deadline
            self.running = True
            self._recovered = self._retries = 0
            try:
                async with trio.open_nursery() as nursery:
                    for symbol in list(self._pending):
                        nursery.start_soon(self._recover_symbol, symbol, started, deadline_at)
            finally:
                self.running = False
            total = self._recovered
            self.metrics.inc("recovered_trades", 0)  # reported even when nothing was missed
            if total or self._retries:
                self.logger.info(
                    "%s: recovered %d missed trades from REST (%d requests repeated, REST "
                    "short of the live stream or failing)",
                    self.name,
                    total,
                    self._retries,
                )
        await self.close_gap()

    async def _fetch(self, symbol: str, deadline_at: float) -> tuple[list[Trade], bool]:
        assert self.rest is not None
        timeout = min(self.settings.request_timeout, deadline_at - trio.current_time())
        with trio.fail_after(max(timeout, 0.0)):
            async with self._limiter:
                rows = await self.rest.recent_trades(self.channel, symbol)
        full = len(rows) >= RECENT_TRADES_MAX.get(self.channel, 60)
        rows.reverse()  # Bybit: newest first
        return [trade_from_rest(self.channel, row) for row in rows], full

    async def _recover_symbol(self, symbol: str, started: float, deadline_at: float) -> None:
        p = self._pending[symbol]
        delay = RETRY_INITIAL
        last: Coverage | None = None
        why = "no REST answer"
        while True:
            asked_at = trio.current_time()
            try:
                rows, full = await self._fetch(symbol, deadline_at)
            except REST_ERRORS as exc:
                self.metrics.inc("rest_failures")
                why = f"REST failed: {describe(exc)}"
            except Exception as exc:  # any other: a row that is no trade, or worse
                self.metrics.inc("malformed")
                why = f"bad REST answer: {describe(exc)}"
                self._bad_answers.warning(
                    "bad_rest_answer", "%s: bad REST recent-trade answer for %s: %s; asking "
                    "again (counted in malformed)", self.name, symbol, why)
            else:
                quiet_ok = asked_at >= started + self.settings.rest_lag_max
                last = coverage(rows, p.mark, p.first_live, full, quiet_ok)
                if last.forward:  # a later answer cannot reach further back
                    break
                why = "REST recent-trade did not reach the first live trade (it lags)"
            now = trio.current_time()
            if now + delay >= deadline_at:
                break
            self._retries += 1
            self.metrics.inc("recovery_retries")
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        await self._settle(symbol, p, last, why)

    async def _settle(self, symbol: str, p: _Pending, cov: Coverage | None, why: str) -> None:
        """Emit what was recovered of ``symbol`` and its held trades; report what was not."""
        last_ts = p.mark[0]
        first_live_ts = p.first_live.ts if p.first_live is not None else now_ms()
        new = cov.new if cov is not None else []
        if cov is None:  # no REST answer: the held live trades show the rate, if any
            self._gap(symbol, last_ts, first_live_ts, p.held or None, why)
        else:
            if not cov.back:
                oldest = cov.rows[0].ts
                self._gap(symbol, last_ts, oldest, cov.rows,
                          "more trades than recent-trade returns")
            if not cov.forward:
                newest = max(last_ts, cov.rows[-1].ts) if cov.rows else last_ts
                self._gap(symbol, newest, first_live_ts, cov.rows, why)
        async with self._lock:
            del self._pending[symbol]
            if self.capture is not None:
                self.capture.recovered(symbol, new, quiet=p.first_live is None,
                                       holding=p.holding)
            batch: list[Event] = list(new)
            if new:
                self._note(symbol, new)
            if p.holding and p.held:
                self._note(symbol, p.held)
                batch.extend(p.held)
                self.held_count -= len(p.held)
            elif not p.holding and new:
                self.metrics.inc("late_recovered_trades", len(new))
            if p.first_live is None and new:
                window = TradeWindow()
                window.add(new)
                self._dedupe[symbol] = window
            self._recovered += len(new)
            self.metrics.inc("recovered_trades", len(new))
            if batch:
                # Noted as delivered above: a connection lost right now must not cancel the
                # emit half-way (bounded, so that a blocked sink cannot hold a shutdown).
                with trio.CancelScope(shield=True), trio.move_on_after(EMIT_GRACE):
                    await self.emit(batch)

    async def stop(self) -> None:
        """The source is stopping (or failed) in the middle of a recovery: emit the held
        trades and report what could not be recovered. They are noted as delivered: if the
        source is restarted, its next session recovers from after them."""
        batch: list[Event] = []
        for symbol, p in self._pending.items():
            end = p.first_live.ts if p.first_live is not None else now_ms()
            self._gap(symbol, p.mark[0], end, None, "stopped during recovery")
            if p.held:
                self._note(symbol, p.held)
                batch.extend(p.held)
            p.held = []
        self._pending.clear()
        self.held_count = 0
        if batch:
            await self.emit(batch)

    def end_session(self) -> None:
        """The session ended (cancelled or lost), maybe in the middle of a recovery.

        A symbol still holding drops its held trades and keeps its mark: they are in REST's
        history, so the next session recovers them with the rest. A symbol whose held trades
        were already emitted cannot be recovered exactly any more: its gap is reported."""
        self.running = False
        self._dedupe.clear()
        for symbol, p in list(self._pending.items()):
            if not p.holding:
                end = p.first_live.ts if p.first_live is not None else now_ms()
                self._gap(symbol, p.mark[0], end, None, "connection lost during recovery")
                del self._pending[symbol]
            else:
                p.held = []
                p.first_live = None
        self.held_count = 0
        self._overflow = False

    def _gap(
        self, symbol: str, from_ts: int, to_ts: int, rows: list[Trade] | None, why: str
    ) -> None:
        self._gap_lost = True
        self.metrics.inc("trade_gaps")
        self.logger.warning(
            "%s: trade gap for %s: trades between %d and %d (%.1f s, %s) may be missing (%s)",
            self.name,
            symbol,
            from_ts,
            to_ts,
            max(0, to_ts - from_ts) / 1000,
            _estimate(rows, to_ts - from_ts),
            why,
        )


def _estimate(rows: list[Trade] | None, span_ms: int) -> str:
    """About how many trades a gap of ``span_ms`` holds, at the rate ``rows`` show."""
    if not rows or len(rows) < 2 or span_ms <= 0:
        return "size unknown"
    covered = rows[-1].ts - rows[0].ts
    if covered <= 0:
        return "size unknown"
    return f"about {round(len(rows) * span_ms / covered)} trades"


__all__ = [
    "REST_ERRORS",
    "Coverage",
    "GapRecovery",
    "RecoveryMark",
    "RecoverySettings",
    "TradeWindow",
    "coverage",
    "describe",
    "trade_from_rest",
]
