"""``klines.from_trades``: the KlineAggregator wired into the pipeline.

``process`` runs inline on the source's task (trades in, klines that closed out). ``run``
hosts the two time-driven parts:

- a timer that closes candles at ``boundary + waiter_latency_ms`` (waiter mode) or at the
  boundary (no waiter), sleeping with ``trio.sleep_until`` on the wall clock of
  :mod:`streamer.clock`, and with ``updates = "throttled"`` flushes open klines every
  ``update_interval_ms``;
- the REST backfill of first candles, fed by ``process`` through a small channel so that
  ``process`` never waits on the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import attrs
import trio

from streamer import clock, http
from streamer.api import Context, Emit, StreamGap
from streamer.events import Event
from streamer.intervals import interval_label
from streamer_aggregate.aggregator import (
    BackfillRequest,
    FirstCandle,
    KlineAggregator,
    RestCandle,
    Updates,
)
from streamer_aggregate.intervals import bybit_code, next_boundary, parse_interval

MAINNET_REST_URL = "https://api.bybit.com"
TESTNET_REST_URL = "https://api-testnet.bybit.com"

#: Backfill requests queued between ``process`` and the REST task; beyond this the candle is
#: marked partial at once instead of blocking the source.
BACKFILL_QUEUE = 10_000
#: REST calls in flight at once, and the pace at which they start: 100/s keeps us under
#: Bybit's 600 requests per 5 s per IP even with other plugins using REST too.
BACKFILL_CONCURRENCY = 8
BACKFILL_START_INTERVAL_S = 0.01


@attrs.define
class KlineConfig:
    #: Candle lengths: any of 1m 3m 5m 15m 30m 1h 2h 4h 6h 12h 1D 1W.
    intervals: list[str] = attrs.Factory(lambda: ["1m"])
    #: Close a candle ``waiter_latency_ms`` after its boundary (late trades still count);
    #: false: close on the first trade of a later interval or at the boundary.
    waiter: bool = True
    waiter_latency_ms: int = 100
    #: "closed": each kline once, when it closes; "every_trade": the open kline after each
    #: batch, then the closed one; "throttled": open klines at most every update_interval_ms.
    updates: Literal["closed", "every_trade", "throttled"] = "closed"
    update_interval_ms: int = 1000
    #: Emit flat klines (o=h=l=c=previous close, volume 0) for intervals without trades.
    fill_gaps: bool = True
    #: Add turnover (sum of price*size) to every kline.
    turnover: bool = False
    #: The first candle of a symbol opened before we were listening: complete it from
    #: Bybit's REST API ("backfill", falls back to "partial" if REST fails), emit it flagged
    #: ``partial`` ("partial") or drop it ("skip").
    first_candle: Literal["backfill", "partial", "skip"] = "backfill"
    #: REST base URL for backfill; default Bybit mainnet, or testnet if ``testnet``.
    rest_url: str | None = None
    testnet: bool = False
    backfill_timeout_s: float = 5.0
    #: When a source reports a stream gap (a lost connection), the candles it overlaps wait
    #: this long for the recovered trades before closing anyway, flagged partial.
    gap_hold_s: float = 60.0

    #: Interval lengths in ms, parsed from ``intervals``.
    interval_ms: list[int] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        if not self.intervals:
            raise ValueError("intervals must list at least one interval, e.g. [\"1m\"]")
        self.interval_ms = [parse_interval(i) for i in self.intervals]
        if len(set(self.interval_ms)) != len(self.interval_ms):
            raise ValueError(f"intervals lists an interval twice: {self.intervals}")
        if not 80 <= self.waiter_latency_ms <= 150:
            raise ValueError(
                f"waiter_latency_ms must be between 80 and 150, got {self.waiter_latency_ms}"
            )
        if not 50 <= self.update_interval_ms <= 3_600_000:
            raise ValueError(
                f"update_interval_ms must be between 50 and 3600000, got "
                f"{self.update_interval_ms}"
            )
        if self.rest_url is not None and not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {self.rest_url!r}")
        if not 0 < self.backfill_timeout_s <= 60:
            raise ValueError("backfill_timeout_s must be in (0, 60]")
        if not 0 <= self.gap_hold_s <= 3600:
            raise ValueError(f"gap_hold_s must be in [0, 3600], got {self.gap_hold_s}")

    @property
    def effective_rest_url(self) -> str:
        if self.rest_url is not None:
            return self.rest_url.rstrip("/")
        return TESTNET_REST_URL if self.testnet else MAINNET_REST_URL


def parse_rest_candle(doc: Any, start: int) -> RestCandle:
    """The candle opening at ``start`` in a GET /v5/market/kline answer (ValueError if none).

    Rows are ``[startTime, open, high, low, close, volume, turnover]`` strings, newest first.
    """
    if not isinstance(doc, dict):
        raise ValueError("answer is not a JSON object")
    if doc.get("retCode") != 0:
        raise ValueError(f"retCode {doc.get('retCode')!r}: {doc.get('retMsg')!r}")
    rows = (doc.get("result") or {}).get("list")
    if not isinstance(rows, list):
        raise ValueError("answer has no result.list")
    for row in rows:
        if isinstance(row, list) and len(row) >= 7 and int(row[0]) == start:
            return RestCandle(
                open=float(row[1]),
                high=float(row[2]),
                low=float(row[3]),
                close=float(row[4]),
                volume=float(row[5]),
                turnover=float(row[6]),
                snapshot_ms=int(doc["time"]),
            )
    raise ValueError(f"no candle starting at {start} in the answer")


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
            metrics=context.metrics,
            logger=context.logger,
        )
        self._backfill_send, self._backfill_receive = trio.open_memory_channel[BackfillRequest](
            BACKFILL_QUEUE
        )
        self._backfill_failures_logged = 0

    # -- inline ----------------------------------------------------------------------------

    def process(self, batch: Sequence[Event]) -> list[Event]:
        agg = self.aggregator
        out: list[Event] = list(agg.add_trades(batch))
        requests = agg.take_backfill_requests()
        for request in requests:
            try:
                self._backfill_send.send_nowait(request)
            except trio.WouldBlock:
                self.context.metrics.inc("backfill_dropped")
                out.extend(agg.apply_backfill(request, None))
        return out

    def on_gap(self, gap: StreamGap) -> list[Event]:
        """A source lost (``closed=False``) or recovered its stream: hold, or release and
        close what is now due."""
        agg = self.aggregator
        if not gap.closed:
            if self.config.gap_hold_s > 0:
                deadline = clock.now_ms() + int(self.config.gap_hold_s * 1000)
                agg.hold(gap.channel, gap.symbols, gap.since_ms, deadline)
            return []
        agg.release(gap.channel, gap.symbols, gap.complete)
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
        """Wall time (ms) of the next moment a candle of some interval is due to close, or a
        gap hold gives up."""
        w = self.waiter_ms
        due = min(next_boundary(now_ms - w, ms) + w for ms in self.config.interval_ms)
        deadline = self.aggregator.next_hold_deadline()
        return due if deadline is None else max(now_ms, min(due, deadline))

    async def _timer(self, emit: Emit) -> None:
        agg = self.aggregator
        throttled = self.config.updates == "throttled"
        flush_every_s = self.config.update_interval_ms / 1000
        next_flush = trio.current_time() + flush_every_s
        while True:
            close_at_ms = self.next_close_ms(clock.now_ms())
            wake = clock.trio_time_at(close_at_ms / 1000)
            if throttled and next_flush < wake:
                await trio.sleep_until(next_flush)
                next_flush += flush_every_s
                out: list[Event] = list(agg.flush_updates())
            else:
                await trio.sleep_until(wake)
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
            async for request in self._backfill_receive:
                await limiter.acquire_on_behalf_of(request)
                nursery.start_soon(self._backfill_one, request, emit, limiter)
                await trio.sleep(BACKFILL_START_INTERVAL_S)

    async def _backfill_one(
        self, request: BackfillRequest, emit: Emit, limiter: trio.CapacityLimiter
    ) -> None:
        try:
            candle = await self.fetch_candle(request)
        finally:
            limiter.release_on_behalf_of(request)
        out: list[Event] = list(self.aggregator.apply_backfill(request, candle))
        if out:
            await emit(out)

    async def fetch_candle(self, request: BackfillRequest) -> RestCandle | None:
        """Bybit's REST candle for ``request``, or ``None`` (logged) if it cannot be had."""
        url = self.config.effective_rest_url + "/v5/market/kline"
        params = {
            "category": request.channel,
            "symbol": request.symbol,
            "interval": bybit_code(request.interval),
            "start": request.start,
            "end": request.start,
            "limit": 1,
        }
        try:
            doc = await http.get_json(url, params, timeout=self.config.backfill_timeout_s)
            return parse_rest_candle(doc, request.start)
        except (http.HttpError, OSError, trio.TooSlowError, ValueError, KeyError,
                TypeError) as exc:
            self.context.metrics.inc("backfill_failed")
            self.context.logger.warning(
                "backfill of the first %s %s %s kline from %s failed (%s: %s); "
                "emitting it flagged partial",
                request.channel, request.symbol, interval_label(request.interval), url,
                type(exc).__name__, exc,
            )
            return None

