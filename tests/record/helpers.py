"""Shared by the record tests: a live run against the fake Bybit under trio's MockClock that
captures what it receives, and a replay of that capture under the replay's own clock."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from streamer import clock
from streamer._config import load_config_text
from streamer._events import Event, Trade
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer.testing import TestingPlugin, running_pipeline
from streamer.wire import render_bytes
from streamer_bybit.simulator import FakeBybit

M = 60_000
SYMBOLS = ["BTCUSDT", "ETHUSDT"]

LIVE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = {streams}
kline_intervals = ["1m"]
url = "{ws}"
rest_url = "{rest}"
recover_gaps = {recover_gaps}
capture_dir = "{capture}"
"""

PIPE = """
[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m", "3m"]
first_candle = "partial"
{extra_transforms}

[[sinks]]
name = "out"
type = "testing.collect"
inputs = [{inputs}]
{extra_sinks}
"""

REPLAY = """
[[sources]]
name = "bybit"
type = "bybit.replay"
path = "{path}"
speed = {speed}
"""


def plugin_manager():
    pm = load_plugin_manager(environ={})
    pm.register(TestingPlugin(), "testing")
    return pm


def pipe(inputs: str = '"klines", "bybit"', extra_transforms: str = "",
         extra_sinks: str = "") -> str:
    return PIPE.format(inputs=inputs, extra_transforms=extra_transforms,
                       extra_sinks=extra_sinks)


async def sleep_until_wall_ms(ms: int) -> None:
    await trio.sleep_until(clock.trio_time_at(ms / 1000))


async def _market(fake: FakeBybit, corrupt: bool = False, late: bool = True,
                  tail_ms: int = 1_000, phase_3m: int | None = None) -> None:
    """Trades over five minutes of (virtual) time: some close candles by the timer, one
    arrives late within the waiter (counts), one beyond it (dropped; ``late``), a flat
    minute, ticker updates and (``corrupt``) a trade the fake's own candles never saw; then
    quiet until ``tail_ms`` after the seventh minute. With ``phase_3m`` the first minute is
    the one that many minutes into a 3m candle (the virtual clock starts at the real time)."""
    m0 = (clock.now_ms() // M + 1) * M
    while phase_3m is not None and (m0 // M) % 3 != phase_3m:
        m0 += M
    await sleep_until_wall_ms(m0 + 500)
    for minute in range(5):
        base = m0 + minute * M
        if minute == 2:
            continue  # a minute without trades: a flat kline from the timer
        for k, offset in enumerate((1_000, 7_300, 21_000, 44_400, 59_950)):
            await sleep_until_wall_ms(base + offset)
            for symbol in SYMBOLS:
                fake.trade("linear", symbol, count=1 + k % 3)
            fake.set_ticker("linear", "BTCUSDT", lastPrice=str(65000 + minute * 10 + k))
            if corrupt and minute == 1 and k == 2:
                t = base + offset + 5
                await sleep_until_wall_ms(t)
                fake.send_raw("linear", (  # as if Bybit had excluded it from its candle
                    f'{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":{t},"data":[{{'
                    f'"T":{t},"s":"BTCUSDT","S":"Buy","v":"0.001","p":"99999.00",'
                    '"L":"PlusTick","i":"corrupt-1","BT":false,"RPI":false,"seq":1}]}'))
        # stamped before the boundary, received 40 ms after it: inside the 100 ms waiter
        await sleep_until_wall_ms(base + M + 40)
        fake.trade("linear", "ETHUSDT", ts=base + M - 3)
        if late:
            # received 400 ms after the boundary: late, dropped by the aggregator
            await sleep_until_wall_ms(base + M + 400)
            fake.trade("linear", "BTCUSDT", ts=base + M - 2)
    await sleep_until_wall_ms(m0 + 7 * M + tail_ms)


STREAM_TOPICS = {"trades": "publicTrade.BTCUSDT", "klines": "kline.1.ETHUSDT",
                 "tickers": "tickers.BTCUSDT"}


async def _live(toml: str, streams: list[str], corrupt: bool, late: bool, tail_ms: int,
                phase_3m: int | None, prepare: Callable[[FakeBybit], None] | None,
                market: Callable[[FakeBybit], Awaitable[None]] | None,
                ) -> tuple[list[Event], dict[str, Any], FakeBybit]:
    fake = FakeBybit(linear_symbols=SYMBOLS, spot_symbols=[], seed=7)
    if prepare is not None:
        prepare(fake)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        full = toml.format(ws=fake.ws_url("linear"), rest=fake.rest_url)
        async with running_pipeline(full, plugin_manager()) as pipeline:
            await fake.wait_subscribed("linear", [STREAM_TOPICS[s] for s in streams])
            if market is None:
                await _market(fake, corrupt, late, tail_ms, phase_3m)
            else:
                await market(fake)
            # What the sinks had and the counters said when the market ended: under the
            # MockClock, timers go on firing (in virtual time, as many as the real time the
            # shutdown waits for the writer thread allows), so later values vary by run.
            events = list(pipeline.node("out").events)
            metrics = copy.deepcopy(pipeline.metrics())
            # The REST requests made by then (later ones answer the later timers).
            metrics["fake"] = {"rest_requests_at_market_end": len(fake.rest_requests)}
        fake.stop()
        nursery.cancel_scope.cancel()
    return events, metrics, fake


def live_run(capture: Path, pipeline_toml: str | None = None, *,
             corrupt: bool = False, late: bool = True, tail_ms: int = 1_000,
             streams: tuple[str, ...] = ("trades", "klines", "tickers"),
             phase_3m: int | None = None, prepare: Callable[[FakeBybit], None] | None = None,
             market: Callable[[FakeBybit], Awaitable[None]] | None = None,
             recover_gaps: bool = False,
             ) -> tuple[list[Event], dict[str, Any], FakeBybit]:
    """Run the live pipeline under a MockClock (virtual time, real sockets); ``prepare``
    sets up the fake before it serves, ``market`` replaces the default trades. Returns the
    events the sink got and the pipeline's metrics, both as the market ended, and the fake.
    ``metrics["fake"]["rest_requests_at_market_end"]``: how many of the fake's
    ``rest_requests`` had been made when the market ended."""
    live = LIVE.replace("{capture}", str(capture)).replace(
        "{recover_gaps}", "true" if recover_gaps else "false").replace(
        "{streams}", "[" + ", ".join(f'"{s}"' for s in streams) + "]")
    return trio.run(_live, live + (pipeline_toml or pipe()), list(streams), corrupt, late,
                    tail_ms, phase_3m, prepare, market,
                    clock=trio.testing.MockClock(autojump_threshold=0))


def replay_run(path: Path, pipeline_toml: str | None = None,
               speed: str = '"max"') -> tuple[list[Event], Pipeline]:
    """Build the replay pipeline and run it as ``streamer run`` does (with its clock)."""
    toml = REPLAY.format(path=path, speed=speed) + (pipeline_toml or pipe())
    config = load_config_text(toml, plugin_manager(), filename="replay.toml", environ={})
    pipeline = Pipeline(config, plugin_manager())

    async def main() -> None:
        await pipeline.run()

    trio.run(main, clock=pipeline.trio_clock())
    return list(pipeline.node("out").events), pipeline


def wire_lines(events: list[Event]) -> list[bytes]:
    """Each event as the wire bytes a sink writes for it alone."""
    return [line for e in events for line in render_bytes([e])]


COLLECT = """
[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["bybit"]
"""


def record_trades(capture: Path, messages: int,
                  trades_in: Callable[[int], int] = lambda i: 1) -> list[Trade]:
    """Record a capture of ``messages`` trade messages, 50 ms apart, the two symbols taking
    turns, message ``i`` holding ``trades_in(i)`` trades; return the trades the live run got
    (checked to be all of them)."""

    async def market(fake: FakeBybit) -> None:
        for i in range(messages):
            fake.trade("linear", SYMBOLS[i % 2], count=trades_in(i))
            await trio.sleep(0.05)
        await trio.sleep(1)

    events, _, _ = live_run(capture, COLLECT, streams=("trades",), market=market)
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == sum(trades_in(i) for i in range(messages))
    return trades
