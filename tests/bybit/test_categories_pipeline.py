"""Through the pipeline (MockClock): bybit.inverse and bybit.option -> klines.from_trades (1m)
-> testing.collect. The aggregator builds candles from inverse and option trades like any
others; each closed kline equals the one computed from the simulator's history."""

from __future__ import annotations

import trio
from faults.helpers import closed_klines, expected_klines, kline_tuple, trade_ids

from streamer.testing import running_pipeline

PIPELINE = """
[[sources]]
name = "inv"
type = "bybit.inverse"
symbols = ["BTCUSD"]
url = "{ws_inverse}"
rest_url = "{rest}"

[[sources]]
name = "opt"
type = "bybit.option"
symbols = "all"
base_coins = ["BTC"]
url = "{ws_option}"
rest_url = "{rest}"

[[transforms]]
name = "agg"
type = "klines.from_trades"
inputs = ["inv", "opt"]
intervals = ["1m"]
waiter = true
first_candle = "partial"
fill_gaps = false

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["agg", "inv", "opt"]
"""

OPTIONS = ["BTC-26DEC26-100000-C", "BTC-26DEC26-100000-P"]


async def test_klines_from_inverse_and_option_trades(fake_bybit, plugin_manager,
                                                     autojump_clock):
    fake_bybit.add_symbol("inverse", "BTCUSD")
    for symbol in OPTIONS:
        fake_bybit.add_symbol("option", symbol)
    toml = PIPELINE.format(ws_inverse=fake_bybit.ws_url("inverse"),
                           ws_option=fake_bybit.ws_url("option"), rest=fake_bybit.rest_url)
    with trio.fail_after(1000):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            sink = pipeline.node("out")
            await fake_bybit.wait_subscribed("inverse", ["publicTrade.BTCUSD"])
            await fake_bybit.wait_subscribed("option", ["publicTrade.BTC"])
            for _ in range(36):  # 3 minutes, a round every 5 s
                fake_bybit.trade("inverse", "BTCUSD", count=2)
                fake_bybit.trade("option", OPTIONS[0], count=3)
                fake_bybit.trade("option", OPTIONS[1], count=1)
                await trio.sleep(5)
            await trio.sleep(60)  # the last minute closes
            events = list(sink.events)
    for category, symbol in [("inverse", "BTCUSD"), ("option", OPTIONS[0]),
                             ("option", OPTIONS[1])]:
        history = fake_bybit.history(category, symbol)
        assert trade_ids(events, symbol) == [t["i"] for t in history]
        want = expected_klines(history)
        closed = closed_klines(events, symbol)
        # The first minute began before the source listened: partial, the others exact.
        assert [k.partial for k in closed] == [True] + [False] * (len(want) - 1)
        assert {k.timestamp: kline_tuple(k) for k in closed[1:]} == {
            start: want[start] for start in sorted(want)[1:]}
        assert {k.channel for k in closed_klines(events, symbol)} == {category}
