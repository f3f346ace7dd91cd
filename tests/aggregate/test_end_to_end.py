"""Issue 5, end to end: the fake Bybit -> bybit source -> klines.from_trades (waiter and
non-waiter) and klines.passthrough -> sinks. Over the same trades, the closed klines of both
modes match the fake's own kline topic and its candles."""

from __future__ import annotations

import trio

from streamer import clock
from streamer._events import Kline
from streamer.intervals import candle_start
from streamer.testing import running_pipeline

M = 60_000

PIPE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trades", "klines"]
kline_intervals = ["1m"]
url = "{ws}"
rest_url = "{rest}"
recover_gaps = false

[[transforms]]
name = "waiter"
type = "klines.from_trades"
inputs = ["bybit"]
first_candle = "partial"

[[transforms]]
name = "nowaiter"
type = "klines.from_trades"
inputs = ["bybit"]
waiter = false
first_candle = "partial"

[[transforms]]
name = "official"
type = "klines.passthrough"
inputs = ["bybit"]

[[sinks]]
name = "out_waiter"
type = "testing.collect"
inputs = ["waiter"]

[[sinks]]
name = "out_nowaiter"
type = "testing.collect"
inputs = ["nowaiter"]

[[sinks]]
name = "out_official"
type = "testing.collect"
inputs = ["official"]
"""


def closed(events, starts) -> dict:
    return {
        (k.symbol, k.timestamp): k
        for k in events
        if isinstance(k, Kline) and k.closed and k.interval == M and k.timestamp in starts
    }


async def test_both_modes_match_the_fake_bybit_klines(fake_bybit, plugin_manager):
    fake = fake_bybit
    toml = PIPE.format(ws=fake.ws_url("linear"), rest=fake.rest_url)
    # Trade times in minutes that are over, so the test needs no real minute to pass; the
    # first trade sits on a boundary so the first candle is complete (not partial).
    m0 = candle_start(clock.now_ms(), M) - 10 * M
    starts = {m0, m0 + M, m0 + 2 * M}
    with trio.fail_after(30):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            await fake.wait_subscribed(
                "linear", ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT", "kline.1.BTCUSDT",
                           "kline.1.ETHUSDT"])
            for symbol in ("BTCUSDT", "ETHUSDT"):
                for offset in (0, 10_000, 20_000, 59_999, M + 5, M + 30_000, 2 * M + 1,
                               2 * M + 40_000, 4 * M + 500):
                    fake.trade("linear", symbol, ts=m0 + offset, count=3)
            sinks = {name: pipeline.node(f"out_{name}")
                     for name in ("waiter", "nowaiter", "official")}
            for sink in sinks.values():
                await sink.wait_for(lambda ev: len(closed(ev, starts)) == 6)
        got = {name: closed(sink.events, starts) for name, sink in sinks.items()}
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for candle in fake.klines("linear", symbol, "1"):
            if candle["start"] not in starts:
                continue
            want = tuple(float(candle[f]) for f in ("open", "high", "low", "close"))
            for name, klines in got.items():
                k = klines[(symbol, candle["start"])]
                assert (k.open, k.high, k.low, k.close) == want, (name, k, candle)
                assert abs(k.volume - float(candle["volume"])) < 1e-9, (name, k, candle)
                assert not k.partial
                if name != "official":
                    assert k.trade_count == sum(
                        1 for t in fake.history("linear", symbol)
                        if candle["start"] <= t["T"] < candle["start"] + M)
    # each closed kline exactly once, in every mode
    for sink in sinks.values():
        keys = [(k.symbol, k.timestamp) for k in sink.events
                if isinstance(k, Kline) and k.closed and k.timestamp in starts]
        assert len(keys) == len(set(keys)) == 6
