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

Where it sits: this module is the REST side only (asking, retrying, judging coverage,
reporting gaps), async and in the subscriber's task. What is held, released and dropped is
the connection's :class:`~streamer_bybit.hold_book.HoldBook`; a settled symbol is handed to
the connection's :class:`~streamer_bybit.outlet.Outlet` (:meth:`GapRecovery._settle`), the
same way downstream as the reader's live events.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

import attrs
import trio

from streamer import Metrics, RateLimitedLog, StreamGap, Trade
from streamer.clock import now_ms
from streamer.net import HttpError
from streamer_bybit.coverage import (
    Coverage,
    RecoveryMark,
    TradeWindow,
    coverage,
    trade_from_rest,
)
from streamer_bybit.hold_book import HeldSymbol, HoldBook
from streamer_bybit.outlet import Outlet
from streamer_bybit.rest import RECENT_TRADES_MAX, BybitRest, BybitRestError

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


class GapRecovery:
    """Recovers the trades one connection missed; see the module doc."""

    def __init__(
        self,
        channel: str,
        trade_symbols: Iterable[str],
        rest: BybitRest | None,
        settings: RecoverySettings,
        outlet: Outlet,
        *,
        metrics: Metrics,
        logger: logging.Logger,
        name: str,
    ) -> None:
        assert outlet.book is not None
        self.channel = channel
        self.trade_symbols = tuple(trade_symbols)
        self.rest = rest
        self.settings = settings
        self.outlet = outlet
        self.book: HoldBook = outlet.book
        self.metrics = metrics
        self.logger = logger
        self.name = name
        #: Per symbol being recovered: the newest trade delivered before the loss.
        self._marks: dict[str, RecoveryMark] = {}
        self._limiter = trio.CapacityLimiter(REST_CONCURRENCY)
        self._gap_since: int | None = None  # newest trade before the loss, while a gap is open
        self._gap_lost = False  # a trade gap was reported during this gap
        self._recovered = 0  # trades recovered by the current run
        self._retries = 0  # requests of the current run asked again
        self._bad_answers = RateLimitedLog(logger)

    @property
    def windows(self) -> dict[str, TradeWindow]:
        """Per symbol, the newest trade delivered (the hold book notes what it lets out)."""
        return self.book.delivered

    @property
    def held_count(self) -> int:
        return self.book.held_count

    def begin(self) -> None:
        """A new session after a lost one: hold the live trades of every symbol traded so far
        until it is recovered (a symbol kept from a session lost mid-recovery keeps its
        mark)."""
        new: list[str] = []
        if self.rest is not None:
            for symbol, window in self.book.delivered.items():
                if symbol not in self._marks:
                    self._marks[symbol] = (window.newest_ts, window.ids())
                    new.append(symbol)
        self.outlet.hold(new)

    async def forget(self, symbols: Iterable[str]) -> None:
        """``symbols`` are no longer streamed (delisted): nothing of them to recover, nothing
        kept. Live trades of theirs held by a recovery in progress go downstream now (they
        were read before the unsubscribe), and that recovery leaves them be."""
        book = self.book
        for symbol in symbols:
            mark = self._marks.pop(symbol, None)
            if mark is not None and symbol in book.held:
                await self.outlet.settle(symbol, [])
            book.delivered.pop(symbol, None)
            book.dedupe.pop(symbol, None)

    # ----------------------------------------------------------------- stream gaps
    async def open_gap(self) -> None:
        """Tell downstream transforms that trades after the last one delivered may be
        missing until the next session has recovered them (klines wait for them)."""
        if self._gap_since is not None or not self.trade_symbols:
            return
        self._gap_since = min((w.newest_ts for w in self.windows.values()), default=now_ms())
        self._gap_lost = False
        await self.outlet.gap(StreamGap(self.channel, self.trade_symbols, self._gap_since))

    async def close_gap(self) -> None:
        if self._gap_since is None:
            return
        since, self._gap_since = self._gap_since, None
        # Without REST, whatever traded during the outage is gone.
        lost = self._gap_lost or (self.rest is None and bool(self.windows))
        await self.outlet.gap(StreamGap(self.channel, self.trade_symbols, since, closed=True,
                                        complete=not lost))

    # ----------------------------------------------------------------- recovering
    async def run(self) -> None:
        """Recover every held symbol, then close the stream gap."""
        if self._marks:
            started = trio.current_time()
            deadline_at = started + self.settings.deadline
            self._recovered = self._retries = 0
            with self.outlet.shared():
                async with trio.open_nursery() as nursery:
                    for symbol in list(self._marks):
                        nursery.start_soon(self._recover_symbol, symbol, started, deadline_at)
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
        mark = self._marks[symbol]
        held = self.book.held[symbol]  # first_live is set by the reader meanwhile
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
                last = coverage(rows, mark, held.first_live, full, quiet_ok)
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
            if symbol not in self._marks:
                return  # delisted meanwhile (forget): nothing to recover any more
        await self._settle(symbol, mark, held, last, why)

    async def _settle(self, symbol: str, mark: RecoveryMark, held: HeldSymbol,
                      cov: Coverage | None, why: str) -> None:
        """Emit what was recovered of ``symbol`` and its held trades; report what was not."""
        if symbol not in self._marks:
            return  # delisted meanwhile (forget): its held trades went, nothing more follows
        last_ts = mark[0]
        first_live_ts = held.first_live.ts if held.first_live is not None else now_ms()
        new = cov.new if cov is not None else []
        if cov is None:  # no REST answer: the held live trades show the rate, if any
            self._gap(symbol, last_ts, first_live_ts, held.trades or None, why)
        else:
            if not cov.back:
                oldest = cov.rows[0].ts
                self._gap(symbol, last_ts, oldest, cov.rows,
                          "more trades than recent-trade returns")
            if not cov.forward:
                newest = max(last_ts, cov.rows[-1].ts) if cov.rows else last_ts
                self._gap(symbol, newest, first_live_ts, cov.rows, why)
        await self.outlet.settle(symbol, new)
        # Only once settled: cancelled before (waiting for the outlet), the symbol is still
        # held and keeps its mark for the next session. (Gone already if it was delisted
        # while the outlet was busy.)
        self._marks.pop(symbol, None)
        self._recovered += len(new)
        self.metrics.inc("recovered_trades", len(new))

    async def stop(self) -> None:
        """The source is stopping (or failed) in the middle of a recovery: emit the held
        trades and report what could not be recovered. They are noted as delivered: if the
        source is restarted, its next session recovers from after them."""
        for symbol, held in self.book.held.items():
            mark = self._marks.get(symbol)
            if mark is None:
                continue  # delisted, being let go by forget
            end = held.first_live.ts if held.first_live is not None else now_ms()
            self._gap(symbol, mark[0], end, None, "stopped during recovery")
        self._marks.clear()
        await self.outlet.release_all()

    def end_session(self) -> None:
        """The session ended (cancelled or lost), maybe in the middle of a recovery.

        A symbol still holding drops its held trades and keeps its mark: they are in REST's
        history, so the next session recovers them with the rest. A symbol whose held trades
        were already emitted cannot be recovered exactly any more: its gap is reported."""
        for symbol, held in self.book.end_session().items():
            mark = self._marks.pop(symbol, None)
            if mark is None:
                continue  # delisted meanwhile: no gap of it to report
            end = held.first_live.ts if held.first_live is not None else now_ms()
            self._gap(symbol, mark[0], end, None, "connection lost during recovery")

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
