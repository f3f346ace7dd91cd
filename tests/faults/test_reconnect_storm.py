"""Fault 1: the fake drops every connection mid-stream, 20 times in a row, while trades go on.

Real pipeline: bybit.linear -> klines.from_trades (waiter mode, 1m) -> testing.collect, plus
the raw trades into a second collector. Each drop is a TCP reset with trades still queued in
the fake; more trades are made while the source is away (recorded in the fake's history and
served by REST recent-trade). Each time the source must reconnect, resubscribe and fill the
gap from REST, so that the trades at the sink equal the fake's history exactly (ids, order)
and every closed 1m kline equals the one computed from that history: nothing lost, nothing
doubled. Runs on a MockClock (autojump): ~6 virtual minutes, a few real seconds.
"""

from __future__ import annotations

import random

import trio

from faults.helpers import (
    MINUTE_MS,
    bybit_klines_toml,
    closed_klines,
    expected_klines,
    kline_tuple,
    trade_ids,
)
from streamer import Backoff, clock
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]
DROPS = 20


def trade_all(fake, count: int = 1) -> None:
    for symbol in SYMBOLS:
        fake.trade("linear", symbol, count=count)


async def sleep_until_ms(epoch_ms: int) -> None:
    await trio.sleep_until(clock.trio_time_at(epoch_ms / 1000))


async def test_twenty_drops_lose_nothing_and_double_nothing(
    fake_bybit, plugin_manager, autojump_clock
):
    fake = fake_bybit
    # Default timings: 20 quick drops push the reconnect backoff towards 30 s, so outages
    # cross minute boundaries; the stream gaps the source reports keep those candles open.
    toml = bybit_klines_toml(fake, SYMBOLS)
    with trio.fail_after(3600):  # virtual seconds
        async with running_pipeline(toml, plugin_manager) as pipeline:
            trades_sink = pipeline.node("trades")
            klines_sink = pipeline.node("klines")
            await fake.wait_subscribed("linear", TOPICS)
            conn = pipeline.node("bybit").connections[0]
            conn.backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))

            def in_sync(events) -> bool:
                return all(trade_ids(events, s) == [t["i"] for t in fake.history("linear", s)]
                           for s in SYMBOLS)

            # Start on a minute boundary so the first candle is complete, not partial.
            m0 = clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
            await sleep_until_ms(m0)
            for symbol in SYMBOLS:
                fake.trade("linear", symbol, ts=m0, count=2)
            for drop in range(1, DROPS + 1):
                for _ in range(3):
                    trade_all(fake, count=2)
                    await trio.sleep(1)
                trade_all(fake)  # queued in the fake, lost with the reset
                assert fake.drop_connections() == 1
                trade_all(fake, count=2)  # while the source is away: history only
                await fake.wait_subscribed("linear", TOPICS)
                trade_all(fake)  # live, possibly held until REST recovery is done
                await trades_sink.wait_for(in_sync)
                assert pipeline.metrics()["bybit"]["reconnects"] == drop
                for _ in range(5):
                    await trio.sleep(2.1)
                    trade_all(fake)
            await trades_sink.wait_for(in_sync)
            # Close the last candle: past the next boundary plus the waiter latency.
            now = clock.now_ms()
            current = now - now % MINUTE_MS
            await sleep_until_ms(current + MINUTE_MS + 1_000)
            want = {s: expected_klines(fake.history("linear", s)) for s in SYMBOLS}
            for s in SYMBOLS:
                n = sum(1 for start in want[s] if start <= current)
                await klines_sink.wait_for(lambda ev, s=s, n=n: len(closed_klines(ev, s)) >= n)
            metrics = pipeline.metrics()

    source = metrics["bybit"]
    assert source["reconnects"] == DROPS
    assert source.get("trade_gaps", 0) == 0
    # Per drop and symbol: the trade queued in the fake at the reset and the 2 made while
    # away came from REST; the live trade after the resubscribe came over the WebSocket.
    assert source["recovered_trades"] == DROPS * len(SYMBOLS) * 3
    assert metrics["agg"].get("late_trades", 0) == 0
    for s in SYMBOLS:
        history = fake.history("linear", s)
        assert trade_ids(trades_sink.events, s) == [t["i"] for t in history]
        got = closed_klines(klines_sink.events, s)
        starts = [k.timestamp for k in got]
        assert len(starts) == len(set(starts)), f"{s}: a kline closed twice"
        # 20 rounds of 3 s of trades, the backoff delay and 10.5 s: 270 s plus the 20
        # delays drawn from random.Random(5) (217.9 s), about 488 s: minutes 0 to 8.
        assert starts == [m0 + i * MINUTE_MS for i in range(9)], s
        assert not any(k.partial for k in got)
        for k in got:
            assert kline_tuple(k) == want[s][k.timestamp], (s, k.timestamp)
        # every candle before the last boundary is there (nothing lost)
        assert sorted(starts) == sorted(start for start in want[s] if start <= current)


async def test_outage_across_a_boundary_keeps_klines_exact(
    fake_bybit, plugin_manager, autojump_clock
):
    fake = fake_bybit
    toml = bybit_klines_toml(fake, SYMBOLS, "ping_interval = 5\nstale_timeout = 10")
    with trio.fail_after(900):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            trades_sink = pipeline.node("trades")
            klines_sink = pipeline.node("klines")
            await fake.wait_subscribed("linear", TOPICS)
            m0 = clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
            await sleep_until_ms(m0)
            for symbol in SYMBOLS:
                fake.trade("linear", symbol, ts=m0)
            await sleep_until_ms(m0 + MINUTE_MS - 5_000)
            trade_all(fake)
            # Away for 10 s across the boundary: connection reset, then refused.
            fake.reachable = False
            fake.drop_connections()
            trade_all(fake, count=3)  # stamped in minute 0, seen only through REST
            await sleep_until_ms(m0 + MINUTE_MS + 5_000)
            trade_all(fake, count=2)  # minute 1
            fake.reachable = True
            await fake.wait_subscribed("linear", TOPICS)
            await trades_sink.wait_for(lambda ev: all(
                trade_ids(ev, s) == [t["i"] for t in fake.history("linear", s)]
                for s in SYMBOLS))
            trade_all(fake)
            await sleep_until_ms(m0 + 2 * MINUTE_MS + 1_000)
            await klines_sink.wait_for(
                lambda ev: all(len(closed_klines(ev, s)) >= 2 for s in SYMBOLS))
            metrics = pipeline.metrics()
    for s in SYMBOLS:
        want = expected_klines(fake.history("linear", s))
        closed = closed_klines(klines_sink.events, s)
        got = {k.timestamp: kline_tuple(k) for k in closed}
        assert got == {start: want[start] for start in (m0, m0 + MINUTE_MS)}
        assert not any(k.partial for k in closed)  # the gap was closed complete
    source, agg = metrics["bybit"], metrics["agg"]
    # The source reported the gap once (the aggregator held the candles for it) and its
    # recovery: the 1 queued + 3 + 2 trades per symbol made while it was away (on both sides
    # of the boundary) came from REST, and no trade gap.
    assert source["reconnects"] == 1
    assert agg["gap_holds"] == 1
    assert agg.get("gap_hold_expired", 0) == 0
    assert agg.get("gap_partial_klines", 0) == 0
    assert source["recovered_trades"] == 6 * len(SYMBOLS)
    assert source.get("trade_gaps", 0) == 0
    assert agg.get("late_trades", 0) == 0


async def test_drops_every_3_s_with_rest_lagging_lose_nothing(
    fake_bybit, plugin_manager, autojump_clock
):
    """Bybit's recent-trade list may lag its WebSocket: here by 1.5 s, with the connection
    reset every 3 s of its life (so some resets land in the middle of a recovery)."""
    fake = fake_bybit
    fake.rest_trade_lag = 1.5
    toml = bybit_klines_toml(fake, SYMBOLS)
    made_away = 0  # trades made while no connection was subscribed: only REST has them
    with trio.fail_after(3600):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            trades_sink = pipeline.node("trades")
            klines_sink = pipeline.node("klines")
            await fake.wait_subscribed("linear", TOPICS)
            conn = pipeline.node("bybit").connections[0]
            conn.backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))
            m0 = clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
            await sleep_until_ms(m0)
            for symbol in SYMBOLS:
                fake.trade("linear", symbol, ts=m0)

            async def market() -> None:
                nonlocal made_away
                while True:
                    for symbol in SYMBOLS:
                        if not fake.subscribers("linear", f"publicTrade.{symbol}"):
                            made_away += 1
                        fake.trade("linear", symbol)
                    await trio.sleep(0.25)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(market)
                # Off the market's grid: a reset at the instant of a tick would race it.
                await trio.sleep(0.1)
                for _ in range(DROPS):
                    await fake.wait_subscribed("linear", TOPICS)
                    await trio.sleep(3)
                    assert fake.drop_connections() == 1
                await fake.wait_subscribed("linear", TOPICS)
                await trio.sleep(3)
                nursery.cancel_scope.cancel()
            await trades_sink.wait_for(lambda ev: all(
                trade_ids(ev, s) == [t["i"] for t in fake.history("linear", s)]
                for s in SYMBOLS))
            now = clock.now_ms()
            current = now - now % MINUTE_MS
            await sleep_until_ms(current + MINUTE_MS + 1_000)
            want = {s: expected_klines(fake.history("linear", s)) for s in SYMBOLS}
            for s in SYMBOLS:
                n = sum(1 for start in want[s] if start <= current)
                await klines_sink.wait_for(lambda ev, s=s, n=n: len(closed_klines(ev, s)) >= n)
            metrics = pipeline.metrics()
    source = metrics["bybit"]
    assert source["reconnects"] == DROPS
    assert source.get("trade_gaps", 0) == 0
    # The resets and resubscribes fall between the market's 0.25 s ticks (the seeded delays
    # put them off that grid), so no trade is in flight at a reset: the ones REST had to
    # fill in are exactly those made while nothing was subscribed.
    assert made_away > DROPS * len(SYMBOLS)  # every outage spanned at least one tick
    assert source["recovered_trades"] == made_away
    assert metrics["agg"].get("late_trades", 0) == 0
    for s in SYMBOLS:
        history = fake.history("linear", s)
        assert trade_ids(trades_sink.events, s) == [t["i"] for t in history]
        got = closed_klines(klines_sink.events, s)
        assert not any(k.partial for k in got)
        assert {k.timestamp: kline_tuple(k) for k in got} == {
            start: want[s][start] for start in want[s] if start <= current
        }
