"""streams = ["liquidations"]: allLiquidation on linear and inverse against the simulator;
every liquidation once across forced reconnects (the simulator pushes the last ones again on
each resubscribe), a reconnect reported as a stream gap of liquidations, the wire keys."""

from __future__ import annotations

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer import Liquidation, StreamGap
from streamer.wire import render
from streamer_bybit.config import BybitOptionConfig, BybitSpotConfig
from streamer_bybit.liquidations import KEYS_MAX, LiquidationFeed
from streamer_bybit.simulator.liquidations import REPLAYED, liquidate, log


def key(item) -> tuple:
    if isinstance(item, Liquidation):
        return (item.ts, item.symbol, item.side, item.size, item.price)
    return (item["T"], item["s"], item["S"], item["v"], item["p"])


async def wait_sessions(source, n: int) -> None:
    while min(c.sessions for c in source.connections) < n:
        await trio.sleep(0.01)


@pytest.mark.parametrize(("category", "symbols"), [
    ("linear", ["BTCUSDT", "ETHUSDT"]),
    ("inverse", ["BTCUSD", "ETHUSD"]),
])
async def test_every_liquidation_once_across_reconnects(fake_bybit, collector: Collector,
                                                        autojump_clock, category, symbols):
    if category == "inverse":
        for symbol in symbols:
            fake_bybit.add_symbol("inverse", symbol)
    source = make_source(fake_bybit, category, symbols=symbols, streams=["liquidations"])
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert source.connections[0].topics == [f"allLiquidation.{s}" for s in symbols]
            made = 0
            for rnd in range(3):
                for k, symbol in enumerate(symbols):
                    liquidate(fake_bybit, category, symbol, count=4 + k, ts=1_000 * (rnd + 1),
                              side="Buy" if k else "Sell")
                    made += 4 + k
                await collector.wait_for(lambda ev, made=made: len(ev) == made)
                fake_bybit.drop_connections(category)
                await wait_sessions(source, rnd + 2)  # replays REPLAYED per symbol: dropped
                while len(collector.gaps) < 2 * (rnd + 1):
                    await trio.sleep(0.01)
            liquidate(fake_bybit, category, symbols[0], count=1, ts=9_000)
            await collector.wait_for(lambda ev: len(ev) == made + 1)
            await fake_bybit.flush()
            nursery.cancel_scope.cancel()
    got = collector.of(Liquidation)
    assert [key(e) for e in got] == [key(m) for cat, m in log(fake_bybit) if cat == category]
    assert len(set(map(key, got))) == len(got)
    assert {e.channel for e in got} == {category}
    # each resubscribe pushed the last REPLAYED of each symbol again: all dropped
    assert source.metrics["duplicate_liquidations"] == 3 * REPLAYED * len(symbols)
    assert source.metrics["liquidation_gaps"] == 3
    sym = tuple(symbols)
    assert collector.gaps == [
        StreamGap(category, sym, 1_000, data_type="liquidations"),
        StreamGap(category, sym, 1_000, closed=True, complete=False, data_type="liquidations"),
        StreamGap(category, sym, 2_000, data_type="liquidations"),
        StreamGap(category, sym, 2_000, closed=True, complete=False, data_type="liquidations"),
        StreamGap(category, sym, 3_000, data_type="liquidations"),
        StreamGap(category, sym, 3_000, closed=True, complete=False, data_type="liquidations"),
    ]
    assert render(got[:1]) == [{"channel": category, "data_type": "liquidations",
                                "data": [{"T": 1_000, "s": symbols[0], "S": "Sell",
                                          "v": "0.003", "p": "94000"}]}]


def test_dedupe_memory_is_bounded():
    from streamer._metrics import Metrics

    feed = LiquidationFeed("linear", ("BTCUSDT",), Metrics())
    raw = b"[" + b",".join(b'{"T":%d,"s":"BTCUSDT","S":"Buy","v":"1","p":"2"}' % t
                          for t in range(KEYS_MAX + 10)) + b"]"
    out: list = []
    import msgspec
    feed.add(msgspec.Raw(raw), out)
    assert len(out) == KEYS_MAX + 10 and len(feed._seen) == KEYS_MAX
    # the oldest keys were forgotten: a repeat of the newest is still dropped
    feed.add(msgspec.Raw(raw[:1] + raw[raw.rindex(b"{"):]), out)
    assert len(out) == KEYS_MAX + 10 and feed.metrics["duplicate_liquidations"] == 1


def test_liquidations_only_on_linear_and_inverse():
    for config_class in (BybitSpotConfig, BybitOptionConfig):
        with pytest.raises(ValueError, match="for linear and inverse only"):
            config_class(load_all_symbols=True, streams=["liquidations"])
