"""KlineTransform under trio's MockClock (autojump): when klines are emitted."""

from __future__ import annotations

import logging
import math

import pytest
import trio

from aggregate.helpers import trade
from streamer import clock
from streamer._api import Context
from streamer._config import structure_options
from streamer._events import Kline
from streamer._metrics import Metrics
from streamer.intervals import next_boundary
from streamer_aggregate.config import KlineConfig
from streamer_aggregate.transform import KlineTransform

M = 60_000


def make(**options) -> KlineTransform:
    options.setdefault("first_candle", "partial")
    config = structure_options(KlineConfig, options)
    ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.agg"),
                  metrics=Metrics())
    return KlineTransform(config, ctx)


class Recorder:
    """An ``emit`` that notes the wall time of each batch."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[Kline]]] = []
        self.trio_times: list[float] = []
        self.event = trio.Event()

    async def __call__(self, batch):
        self.batches.append((clock.now_ms(), list(batch)))
        self.trio_times.append(trio.current_time())
        self.event.set()
        self.event = trio.Event()

    def klines(self):
        return [(t, k) for t, batch in self.batches for k in batch]

    def trio_klines(self):
        """Each kline with the trio time of its batch (exact, where ``klines`` has ms)."""
        return [(t, k) for t, (_, batch) in zip(self.trio_times, self.batches, strict=True)
                for k in batch]


async def sleep_to(ms: int) -> None:
    await trio.sleep_until(clock.trio_time_at(ms / 1000))


async def test_waiter_closes_at_boundary_plus_latency_and_counts_late_trades(autojump_clock):
    tr = make(waiter_latency_ms=120)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M)
            await sleep_to(b - 500)
            assert tr.process([trade(b - 500, 10), trade(b - 400, 11)]) == []
            await sleep_to(b + 60)
            # trades of both candles arrive inside the waiter window: each goes where it belongs
            assert tr.process([trade(b + 30, 20), trade(b - 5, 12)]) == []
            await rec.event.wait()
            (when, k), = rec.klines()
            assert b + 120 <= when <= b + 121  # boundary + waiter latency, by the local clock
            assert (k.timestamp, k.open, k.close, k.trade_count, k.closed) == (
                b - M, 10.0, 12.0, 3, True)
            assert tr.process([trade(b - 1, 99)]) == []  # too late now: counted, dropped
            assert tr.context.metrics["late_trades"] == 1
            await sleep_to(b + M + 500)
            closes = [(when, k.timestamp, k.close) for when, k in rec.klines()]
            assert closes[1:] == [(closes[1][0], b, 20.0)]
            assert b + M + 120 <= closes[1][0] <= b + M + 121
            nursery.cancel_scope.cancel()


async def test_flat_klines_from_the_timer(autojump_clock):
    tr = make()
    rec = Recorder()
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M)
            await sleep_to(b + 1000)
            tr.process([trade(b + 1000, 5)])
            await sleep_to(b + 4 * M + 500)
            got = [(k.timestamp, k.close, k.trade_count) for _, k in rec.klines()]
            assert got == [(b, 5.0, 1), (b + M, 5.0, 0), (b + 2 * M, 5.0, 0),
                           (b + 3 * M, 5.0, 0)]
            assert all(b + i * M + M + 100 <= t <= b + i * M + M + 101
                       for i, (t, _) in enumerate(rec.klines()))
            nursery.cancel_scope.cancel()


async def test_without_waiter_closes_at_boundary_or_on_the_next_trade(autojump_clock):
    tr = make(waiter=False)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M)
            await sleep_to(b - 1000)
            tr.process([trade(b - 1000, 1)])
            await rec.event.wait()
            (when, k), = rec.klines()
            assert b <= when <= b + 1 and k.timestamp == b - M
            # exchange clock ahead of ours: the next interval's first trade closes the candle
            await sleep_to(b + 1000)
            tr.process([trade(b + 1000, 2)])
            out = tr.process([trade(b + M + 5, 3)])  # before our clock reaches b + M
            assert [(k.timestamp, k.close) for k in out] == [(b, 2.0)]
            nursery.cancel_scope.cancel()


async def test_throttled_updates_every_interval(autojump_clock):
    tr = make(updates="throttled", update_interval_ms=250)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M)
            # The flushes fall on start + n * 250 ms; the trades begin 20 ms after one of
            # them (past b + 10 ms), one every 100 ms for one second.
            t0 = start + math.ceil((clock.trio_time_at((b + 10) / 1000) - start) / 0.25) * 0.25
            t0 += 0.02
            await trio.sleep_until(t0)
            for i in range(10):
                assert tr.process([trade(b + 10 + i * 100, 1 + i)]) == []
                await trio.sleep(0.1)
            updates = [(when, k) for when, k in rec.trio_klines() if not k.closed]
            # Flushes at t0 + 230, 480, 730 and 980 ms: the trades sent by then are those
            # at t0 + 0-200 (3), 0-400 (5), 0-700 (8) and 0-900 ms (10).
            assert [k.trade_count for _, k in updates] == [3, 5, 8, 10]
            assert [when - t0 for when, _ in updates] == pytest.approx(
                [0.23, 0.48, 0.73, 0.98], abs=1e-9)
            assert all(k.timestamp == b for _, k in updates)
            await sleep_to(b + M + 200)
            closed = [k for _, k in rec.klines() if k.closed]
            assert [(k.timestamp, k.trade_count, k.close) for k in closed] == [(b, 10, 10.0)]
            nursery.cancel_scope.cancel()


async def test_every_trade_updates_come_back_from_process(autojump_clock):
    tr = make(updates="every_trade", intervals=["1m", "5m"])
    b = next_boundary(clock.now_ms(), 5 * M)
    out = tr.process([trade(b + 1, 1), trade(b + 2, 3)])
    assert [(k.interval, k.closed, k.trade_count) for k in out] == [
        (M, False, 2), (5 * M, False, 2)]


async def test_stream_gap_holds_candles_until_the_source_recovers(autojump_clock):
    """A source reports a lost connection: candles it overlaps wait for the recovered trades
    (which would otherwise be late), and close as soon as the gap closes."""
    from streamer._api import StreamGap

    tr = make(waiter_latency_ms=100)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M) + M
            await sleep_to(b - M - 2_000)
            tr.process([trade(b - M - 2_000, 9)])  # the first candle (partial by config)
            await sleep_to(b - 2_000)
            tr.process([trade(b - 2_000, 10)])
            assert tr.on_gap(StreamGap("linear", ("BTCUSDT",), b - 2_000)) == []
            await sleep_to(b + 5_000)
            assert [k.timestamp for _, k in rec.klines()] == [b - 2 * M]  # held past b + waiter
            # The source recovered trades of the old candle, then closes the gap.
            assert tr.process([trade(b - 1_000, 12), trade(b + 1_000, 13)]) == []
            out = tr.on_gap(StreamGap("linear", ("BTCUSDT",), b - 2_000, closed=True))
            assert [(k.timestamp, k.close, k.trade_count, k.partial) for k in out] == [
                (b - M, 12.0, 2, False)]
            assert tr.context.metrics["late_trades"] == 0
            nursery.cancel_scope.cancel()


async def test_stream_gap_not_recovered_in_time_closes_partial(autojump_clock):
    from streamer._api import StreamGap

    tr = make(waiter_latency_ms=100, gap_hold_s=30)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M) + M
            await sleep_to(b - M - 2_000)
            tr.process([trade(b - M - 2_000, 9)])  # the first candle (partial by config)
            await sleep_to(b - 2_000)
            tr.process([trade(b - 2_000, 10)])
            tr.on_gap(StreamGap("linear", ("BTCUSDT",), b - 2_000))
            await sleep_to(b + 40_000)
            (_, first), (when, k) = rec.klines()
            assert first.timestamp == b - 2 * M
            # The hold gave up 30 s after the gap opened (not at the next boundary).
            assert b - 2_000 + 30_000 <= when <= b - 2_000 + 30_001
            assert (k.timestamp, k.partial, k.closed) == (b - M, True, True)
            assert tr.context.metrics["gap_hold_expired"] == 1
            # A late "closed" from the source changes nothing.
            assert tr.on_gap(StreamGap("linear", ("BTCUSDT",), b - 2_000, closed=True)) == []
            nursery.cancel_scope.cancel()


async def test_a_gap_of_liquidations_holds_no_candle(autojump_clock):
    """Candles come from trades: a source's gap in another data type does not hold them."""
    from streamer._api import StreamGap

    tr = make(waiter_latency_ms=100)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M) + M
            await sleep_to(b - M - 2_000)
            tr.process([trade(b - M - 2_000, 9)])
            await sleep_to(b - 2_000)
            tr.process([trade(b - 2_000, 10)])
            gap = StreamGap("linear", ("BTCUSDT",), b - 2_000, data_type="liquidations")
            assert tr.on_gap(gap) == []
            await sleep_to(b + 5_000)
            # closed at the boundary (+ the waiter), not held
            assert [k.timestamp for _, k in rec.klines()] == [b - 2 * M, b - M]
            nursery.cancel_scope.cancel()


async def test_a_delisted_symbol_is_closed_now_and_forgotten(autojump_clock):
    """A source says a symbol's stream ended (delisted): its open candle closes at once, as
    it stands; no flat candle of it follows; the other symbols go on as before."""
    from streamer._api import StreamGap

    tr = make(waiter_latency_ms=100, fill_gaps=True)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), M) + M
            await sleep_to(b + 1_000)
            tr.process([trade(b + 1_000, 10), trade(b + 1_000, 20, symbol="ETHUSDT")])
            await sleep_to(b + 2_000)
            tr.process([trade(b + 2_000, 11), trade(b + 2_000, 25, "2", symbol="ETHUSDT")])
            out = tr.on_gap(StreamGap("linear", ("ETHUSDT", "GONEUSDT"), clock.now_ms(),
                                      closed=True, ended=True))
            assert [(k.symbol, k.timestamp, k.open, k.close, k.volume, k.trade_count,
                     k.closed) for k in out] == [("ETHUSDT", b, 20.0, 25.0, 3.0, 2, True)]
            await sleep_to(b + 3 * M + 1_000)
            nursery.cancel_scope.cancel()
    later = [(k.symbol, k.timestamp) for _, k in rec.klines()]
    # BTC closes each minute (then flat ones); ETH never again
    assert later == [("BTCUSDT", b), ("BTCUSDT", b + M), ("BTCUSDT", b + 2 * M)]
    assert tr.context.metrics["symbols_ended"] == 1


async def test_the_waiter_works_the_same_for_sub_second_candles(autojump_clock):
    tr = make(intervals=["500ms"], fill_gaps=False)
    rec = Recorder()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            b = next_boundary(clock.now_ms(), 500)
            await sleep_to(b + 100)
            tr.process([trade(b + 100, 1), trade(b + 499, 2)])
            await sleep_to(b + 560)
            assert tr.process([trade(b + 450, 3)]) == []  # inside the waiter window: counts
            await rec.event.wait()
            ((when, k),) = rec.klines()
            assert b + 600 <= when <= b + 601
            assert (k.interval, k.timestamp, k.close, k.trade_count) == (500, b, 2.0, 3)
            nursery.cancel_scope.cancel()


async def test_the_waiter_works_the_same_for_calendar_months(autojump_clock):
    from streamer.intervals import MONTH_MS, interval

    tr = make(intervals=["1M"])
    rec = Recorder()
    month = interval("1M")
    with trio.fail_after(3600 * 24 * 62):
        async with trio.open_nursery() as nursery:
            await nursery.start(tr.run, rec)
            now = clock.now_ms()
            start = month.start(now)
            end = month.end(start)  # the next 1st of a month, 00:00 UTC
            tr.process([trade(now, 1)])
            await sleep_to(end + 99)
            assert rec.klines() == []
            await sleep_to(end + 101)
            ((when, k),) = rec.klines()
            assert (k.interval, k.timestamp, k.trade_count) == (MONTH_MS, start, 1)
            assert end + 100 <= when <= end + 101
            nursery.cancel_scope.cancel()
