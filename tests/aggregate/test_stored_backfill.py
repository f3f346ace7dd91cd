"""First candles completed from a sink's stored history (``context.history.stored``): asked
first, for every trade from the candle's open to our first one, merged exactly; what it does
not know (or cannot say in time, or fails on) is asked of the input source's history."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import trio

from aggregate.helpers import trade
from streamer import clock
from streamer._api import Context
from streamer._config import structure_options
from streamer._metrics import Metrics
from streamer.history import Candles, HistoryCandle, HistoryError, TradeSummary
from streamer.intervals import candle_start
from streamer_aggregate.transform import KlineConfig, KlineTransform

M = 60_000


class Store:
    """A stored history answering from a table of summaries (``None``: does not know)."""

    def __init__(self, answers: dict[tuple[int, int], Any] | None = None, *,
                 fail: bool = False, hang: bool = False) -> None:
        self.answers = answers or {}
        self.fail = fail
        self.hang = hang
        self.asks: list[tuple[str, str, list[tuple[int, int]]]] = []

    async def trades_summaries(self, channel: str, symbol: str,
                               ranges: Sequence[tuple[int, int]]) -> list[TradeSummary | None]:
        self.asks.append((channel, symbol, sorted(ranges)))
        if self.hang:
            await trio.sleep_forever()
        if self.fail:
            raise HistoryError("OperationalError: the database is away")
        return [self.answers.get(r) for r in ranges]


class SourceCandles:
    """A source's history with 1m candles, the same every minute."""

    channel = "linear"
    candle_intervals = frozenset({M})
    max_candles = 100

    def __init__(self) -> None:
        self.asks: list[tuple[str, int]] = []

    async def candles(self, channel: str, symbol: str, interval_ms: int, start_ms: int, *,
                      limit: int) -> Candles:
        self.asks.append((symbol, start_ms))
        rows = tuple(HistoryCandle(start_ms + i * M, 90.0, 110.0, 80.0, 95.0, 7.0, 700.0)
                     for i in range(limit))
        return Candles(M, rows, start_ms + 1)

    async def trades_since(self, channel: str, symbol: str, since_ms: int) -> Any:
        raise AssertionError("not asked: 1m candles serve")


def make(store: Store | None, source: SourceCandles | None = None,
         **options: Any) -> KlineTransform:
    config = structure_options(KlineConfig, {"turnover": True, "intervals": ["1m"], **options})
    ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.stored"),
                  metrics=Metrics(), inputs=("src",))
    if store is not None:
        ctx.history.add_stored("db", store)
    if source is not None:
        ctx.history.add("src", source)
    return KlineTransform(config, ctx)


async def drain(tr: KlineTransform) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tr.backfill_worker, _no_emit)
        while tr.aggregator.pending_backfills():
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


async def _no_emit(batch: object) -> None:
    raise AssertionError(f"nothing should be emitted here: {batch}")


def summary(start: int, until: int, count: int = 3) -> TradeSummary:
    if not count:
        return TradeSummary(start, until, 0, None, None, None, None, "0", "0")
    return TradeSummary(start, until, count, "99.5", "101", "98.25", "100.5", "2.5", "250.125")


def open_kline(tr: KlineTransform, interval: int = M) -> Any:
    (k,) = [k for k in tr.aggregator.open_klines() if k.interval == interval]
    return k


async def test_a_stored_summary_completes_every_first_candle_exactly() -> None:
    b = candle_start(clock.now_ms(), 5 * M) - 10 * M
    first = b + M + 30_000
    store = Store({(b + M, first): summary(b + M, first), (b, first): summary(b, first, 5)})
    source = SourceCandles()
    tr = make(store, source, intervals=["1m", "5m"])
    with trio.fail_after(10):
        tr.process([trade(first, "100", "1")])
        await drain(tr)
    # One question for both first candles of the symbol.
    assert store.asks == [("linear", "BTCUSDT", [(b, first), (b + M, first)])]
    assert source.asks == []
    k = open_kline(tr)
    assert (k.timestamp, k.open, k.high, k.low, k.close) == (b + M, 99.5, 101.0, 98.25, 100.0)
    assert (k.volume, k.turnover, k.trade_count, k.partial) == (3.5, 350.125, 4, False)
    assert open_kline(tr, 5 * M).trade_count == 6
    assert tr.context.metrics["backfilled_from_store"] == 2


async def test_no_stored_trade_before_ours_is_an_answer_too() -> None:
    b = candle_start(clock.now_ms(), M) - 10 * M
    store = Store({(b, b + 30_000): summary(b, b + 30_000, 0)})
    tr = make(store)
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, "100", "1")])
        await drain(tr)
    k = open_kline(tr)
    assert (k.open, k.volume, k.trade_count, k.partial) == (100.0, 1.0, 1, False)


async def test_what_the_store_does_not_know_is_asked_of_the_source() -> None:
    b = candle_start(clock.now_ms(), M) - 10 * M
    store, source = Store(), SourceCandles()
    tr = make(store, source)
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, "100", "1")])
        await drain(tr)
    assert store.asks == [("linear", "BTCUSDT", [(b, b + 30_000)])]
    assert source.asks == [("BTCUSDT", b)]
    k = open_kline(tr)
    assert (k.open, k.high, k.low, k.partial) == (90.0, 110.0, 80.0, False)
    assert tr.context.metrics["backfilled_from_store"] == 0


async def test_a_failing_store_is_counted_and_the_source_asked() -> None:
    b = candle_start(clock.now_ms(), M) - 10 * M
    source = SourceCandles()
    tr = make(Store(fail=True), source)
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, "100", "1")])
        await drain(tr)
    assert tr.context.metrics["stored_history_failed"] == 1
    assert source.asks == [("BTCUSDT", b)]
    assert not open_kline(tr).partial


async def test_a_store_that_takes_half_the_timeout_leaves_the_rest_to_the_source() -> None:
    b = candle_start(clock.now_ms(), M) - 10 * M
    source = SourceCandles()
    tr = make(Store(hang=True), source, intervals=["1m", "5m"], backfill_timeout_s=0.4)
    with trio.fail_after(10):
        tr.process([trade(b + 30_000, "100", "1")])
        await drain(tr)
    # Both first candles, in one answer of 1m candles reaching back to the 5m one's open.
    assert source.asks == [("BTCUSDT", b - b % (5 * M))]
    assert [k.partial for k in tr.aggregator.open_klines()] == [False, False]
