"""A source run again after its run ended keeps its connections' gap-recovery state.

The runtime restarts a failed source by calling ``run`` again on the same object. What the
connections see of a failure is that their tasks are cancelled (the source's nursery cancels
them when one task raises); the test gives them exactly that by cancelling the first run from
outside, lets the market trade while the source is down, then runs it again. MockClock.
"""

from __future__ import annotations

import trio
from bybit.harness import Collector, make_source

from streamer._events import Trade
from streamer_bybit.simulator import FakeBybit

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]


def ids(collector: Collector, symbol: str) -> list[str]:
    return [e.trade_id for e in collector.of(Trade) if e.symbol == symbol]


def history(fake: FakeBybit, symbol: str) -> list[str]:
    return [t["i"] for t in fake.history("linear", symbol)]


def trade_round(fake: FakeBybit) -> None:
    for symbol in SYMBOLS:
        fake.trade("linear", symbol, count=2)


async def test_a_source_run_again_recovers_what_it_missed_while_down(
    collector, autojump_clock
):
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=6)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS)
            async with trio.open_nursery() as first_run:
                await first_run.start(source.run, collector)
                for _ in range(5):
                    trade_round(fake)
                    await trio.sleep(0.2)
                await collector.wait_for(lambda ev: len(ids(collector, "BTCUSDT")) == 10
                                         and len(ids(collector, "ETHUSDT")) == 10)
                first_run.cancel_scope.cancel()
            connections = list(source.connections)
            assert not any(c.connected for c in connections)
            for _ in range(3):  # the source is down: history only (REST recent-trade)
                trade_round(fake)
                await trio.sleep(0.2)
            async with trio.open_nursery() as second_run:
                await second_run.start(source.run, collector)
                await fake.wait_subscribed("linear", TOPICS)
                for _ in range(5):
                    trade_round(fake)
                    await trio.sleep(0.2)
                await collector.wait_for(lambda ev: all(
                    len(ids(collector, s)) >= len(history(fake, s)) for s in SYMBOLS))
                await trio.sleep(1)  # nothing more (a duplicate) may follow
                second_run.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    assert source.connections == connections  # the same ones, with their state
    for s in SYMBOLS:
        assert ids(collector, s) == history(fake, s)  # 26 each: once, in order
        assert len(history(fake, s)) == 26
    # the 3 rounds made while the source was down, 2 trades per symbol each
    assert source.metrics["recovered_trades"] == 12
    assert source.metrics["trade_gaps"] == 0
    # reported when the second run began, closed complete once recovered
    assert [(g.closed, g.complete) for g in collector.gaps] == [(False, True), (True, True)]


async def test_a_source_stopped_mid_recovery_then_run_again_doubles_nothing(
    collector, autojump_clock
):
    """Cut off in the middle of a recovery, the first run emits the live trades it held and
    reports the trades before them as a gap; the second run recovers from after the held
    trades, so none comes twice."""
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=7)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS)
            async with trio.open_nursery() as first_run:
                await first_run.start(source.run, collector)
                for _ in range(3):
                    trade_round(fake)
                    await trio.sleep(0.2)
                await collector.wait_for(lambda ev: len(ids(collector, "ETHUSDT")) == 6)
                fake.rest_trade_lag = 60.0  # REST cannot cover the gap: live trades are held
                fake.drop_connections()
                away = {t["i"] for s in SYMBOLS for t in fake.trade("linear", s, count=2)}
                await fake.wait_subscribed("linear", TOPICS)
                for _ in range(2):
                    trade_round(fake)
                    await trio.sleep(0.2)
                recovery = source.connections[0].recovery
                while recovery.held_count < 8:
                    await trio.sleep(0.01)
                first_run.cancel_scope.cancel()
            fake.rest_trade_lag = 0.0
            for _ in range(2):  # the source is down
                trade_round(fake)
                await trio.sleep(0.2)
            async with trio.open_nursery() as second_run:
                await second_run.start(source.run, collector)
                await fake.wait_subscribed("linear", TOPICS)
                trade_round(fake)
                await collector.wait_for(lambda ev: all(
                    ids(collector, s)[-1] == history(fake, s)[-1] for s in SYMBOLS))
                await trio.sleep(1)  # nothing more (a duplicate) may follow
                second_run.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    for s in SYMBOLS:
        # everything once, in order, but the round made while the first run reconnected
        assert ids(collector, s) == [i for i in history(fake, s) if i not in away]
        assert len(history(fake, s)) == 18
    assert source.metrics["trade_gaps"] == 2  # one per symbol, by the stopped recovery
    assert source.metrics["recovered_trades"] == 8  # the 2 rounds made while it was down
