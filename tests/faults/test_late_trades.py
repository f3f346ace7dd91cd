"""Fault 4: late trades through the full pipeline, fake Bybit -> bybit.linear ->
klines.from_trades (waiter mode, 1m) -> testing.collect, on a MockClock.

A trade stamped before a boundary but delivered after its candle closed (boundary +
waiter_latency_ms) is counted in ``late_trades`` and dropped: the closed kline is never
re-opened and never emitted twice (the older streamer emitted a bogus second kline). A trade
delivered inside the waiter window still counts, as the positive control.
"""

from __future__ import annotations

import pytest
import trio

from faults.helpers import (
    MINUTE_MS,
    bybit_klines_toml,
    closed_klines,
    expected_klines,
    kline_tuple,
)
from streamer import clock
from streamer._events import Kline
from streamer.testing import running_pipeline

WAITER_MS = 100  # klines.from_trades' default waiter_latency_ms


async def sleep_until_ms(epoch_ms: float) -> None:
    await trio.sleep_until(clock.trio_time_at(epoch_ms / 1000))


async def test_late_trades_counted_never_reopen_a_closed_kline(
    fake_bybit, plugin_manager, autojump_clock
):
    fake = fake_bybit
    symbol = "BTCUSDT"
    with trio.fail_after(600):  # virtual seconds
        async with running_pipeline(bybit_klines_toml(fake, [symbol]), plugin_manager) as p:
            sink = p.node("klines")
            await fake.wait_subscribed("linear", [f"publicTrade.{symbol}"])
            m0 = clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
            m1 = m0 + MINUTE_MS
            await sleep_until_ms(m0)
            fake.trade("linear", symbol, ts=m0, count=2)
            await sleep_until_ms(m0 + 30_000)
            fake.trade("linear", symbol, count=2)
            # Inside the waiter window: stamped in minute 0, delivered 50 ms after the boundary
            # behind a trade of minute 1. Both count where they belong.
            await sleep_until_ms(m1 + WAITER_MS // 2)
            fake.trade("linear", symbol, ts=m1 + 10)
            fake.trade("linear", symbol, ts=m1 - 5, price="1", size="7")
            # After the close: the candle of minute 0 is out and stays as it was.
            await sink.wait_for(lambda ev: len(closed_klines(ev, symbol)) == 1)
            # closed exactly at the boundary + the waiter latency
            assert trio.current_time() == pytest.approx(
                clock.trio_time_at((m1 + WAITER_MS) / 1000), abs=1e-6)
            closed_before = kline_tuple(closed_klines(sink.events, symbol)[0])
            late = [fake.trade("linear", symbol, ts=m1 - 1, price="999999", size="50"),
                    fake.trade("linear", symbol, ts=m0, count=3)]
            await fake.flush()
            fake.trade("linear", symbol, ts=m1 + 20_000)  # minute 1 goes on
            n_late = sum(len(batch) for batch in late)
            while p.metrics()["agg"].get("late_trades", 0) < n_late:
                await trio.sleep(0.01)
            await sleep_until_ms(m1 + MINUTE_MS + 1_000)
            await sink.wait_for(lambda ev: len(closed_klines(ev, symbol)) >= 2)
            metrics = p.metrics()["agg"]
    late_ids = {t["i"] for batch in late for t in batch}
    on_time = [t for t in fake.history("linear", symbol) if t["i"] not in late_ids]
    want = expected_klines(on_time)
    got = closed_klines(sink.events, symbol)
    assert [k.timestamp for k in got] == [m0, m1]  # each once, in order
    assert kline_tuple(got[0]) == want[m0] == closed_before
    assert got[0].trade_count == 5 and got[0].low == 1.0  # the in-window trade counted
    assert kline_tuple(got[1]) == want[m1]
    assert metrics["late_trades"] == n_late == 4
    # nothing after the close mentions minute 0 again, open or closed
    assert [e for e in sink.events if isinstance(e, Kline) and e.timestamp == m0] == [got[0]]
