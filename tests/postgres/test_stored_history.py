"""First candles from the trades a postgres sink stored: a run stores trades; a second run's
``klines.from_trades`` completes its first candle from them, exactly, through the core
(``context.history.stored``), and only where the first run stored every trade: a range in
which the source reported a gap is not used.

The sources are scripted (no history of their own: a first candle the database does not
complete stays partial). The candles are 2 s long and the trades are stamped 6-8 seconds
ahead of the clock, so the first candle is still open when the second run starts and closes
on the real clock once its two seconds are over (the test takes about 10 s)."""

from __future__ import annotations

from decimal import Decimal

import trio
from pg_helpers import wait_until
from postgres_server import PASSWORD_ENV

from streamer import Kline, StreamGap, Trade, clock
from streamer.testing import running_pipeline

SECOND = 1000
CANDLE = 2 * SECOND

SOURCE = """
[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false
"""

STORE = """
[[sinks]]
name = "history"
type = "postgres"
inputs = ["src"]
dsn = "{dsn}"
password_env = "{password_env}"
schema = "{schema}"
"""

KLINES = """
[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["src"]
intervals = ["2s"]
first_candle = "backfill"
fill_gaps = false

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["klines"]
"""


def deal(symbol: str, ts: int, price: str, size: str, run: int) -> Trade:
    return Trade("linear", symbol, ts, "Buy", price, size, f"r{run}-{symbol}-{ts}")


async def test_a_second_run_completes_its_first_candle_from_the_stored_trades_where_whole(
        plugin_manager, postgres_server, postgres_schema):
    store = STORE.format(dsn=postgres_server.dsn, password_env=PASSWORD_ENV,
                         schema=postgres_schema)
    # The candle opens 6-8 s ahead: the first run (about 1 s) is over long before it closes.
    s = (clock.now_ms() // CANDLE + 4) * CANDLE

    def first_run(symbol: str) -> list[Trade]:
        return [deal(symbol, s + dt, price, size, 1) for dt, price, size in (
            (-500, "99.0", "1"), (100, "100.5", "0.25"), (300, "101.25", "0.5"),
            (600, "98.75", "2"), (900, "100.0", "1"))]

    btc, eth = first_run("BTCUSDT"), first_run("ETHUSDT")
    with trio.fail_after(60):
        async with running_pipeline(SOURCE + store, plugin_manager) as pipeline:
            src = pipeline.node("src")
            src.push(btc[:3] + eth[:3])
            # ETH's connection is lost after its trade at s + 300 and not recovered whole.
            src.push_gap(StreamGap("linear", ("ETHUSDT",), s + 300))
            src.push_gap(StreamGap("linear", ("ETHUSDT",), s + 300, closed=True,
                                   complete=False))
            src.push(btc[3:] + eth[3:])
            await pipeline.node("history").writer.wait_written(10)

        second = [deal(symbol, s + dt, price, size, 2) for dt, price, size in (
            (900, "100.5", "0.5"), (1200, "102.0", "1")) for symbol in ("BTCUSDT", "ETHUSDT")]
        async with running_pipeline(SOURCE + KLINES + store, plugin_manager) as pipeline:
            assert pipeline.nodes["klines"].context.history.store_names == ["history"]
            pipeline.node("src").push(second)
            assert clock.now_ms() < s + CANDLE  # the first candle is still open
            out = pipeline.node("out")
            await wait_until(lambda: sum(isinstance(k, Kline) and k.closed
                                         for k in out.events) == 2)
            klines = {k.symbol: k for k in out.events}
            klines_metrics = pipeline.nodes["klines"].context.metrics
            sink_metrics = pipeline.nodes["history"].context.metrics

    # BTC: the first run stored every trade from before s to s + 900: its three in the
    # candle come back summed by the database, exactly.
    stored = [(Decimal("100.5"), Decimal("0.25")), (Decimal("101.25"), Decimal("0.5")),
              (Decimal("98.75"), Decimal("2"))]
    ours = [(Decimal("100.5"), Decimal("0.5")), (Decimal("102.0"), Decimal("1"))]
    both = stored + ours
    assert klines["BTCUSDT"] == Kline(
        "linear", "BTCUSDT", CANDLE, s, 100.5, 102.0, 98.75, 102.0,
        float(sum(v for _, v in both)), 5, True, float(sum(p * v for p, v in both)), False)
    # ETH: the gap from s + 300 lies in the range asked: the database does not answer, and
    # without a source history the candle is flagged partial with our trades only.
    assert klines["ETHUSDT"] == Kline(
        "linear", "ETHUSDT", CANDLE, s, 100.5, 102.0, 100.5, 102.0, 1.5, 2, True,
        float(sum(p * v for p, v in ours)), True)
    assert klines_metrics["backfilled_from_store"] == 1
    assert sink_metrics["history_answers"] == 1
    assert sink_metrics["history_unknown"] == 1


async def test_serve_history_false_offers_the_store_to_no_transform(
        plugin_manager, postgres_server, postgres_schema):
    store = STORE.format(dsn=postgres_server.dsn, password_env=PASSWORD_ENV,
                         schema=postgres_schema)
    with trio.fail_after(60):
        async with running_pipeline(SOURCE + KLINES + store, plugin_manager) as pipeline:
            assert pipeline.nodes["klines"].context.history.store_names == ["history"]
        async with running_pipeline(SOURCE + KLINES + store + "serve_history = false\n",
                                    plugin_manager) as pipeline:
            assert pipeline.nodes["klines"].context.history.store_names == []
            assert not hasattr(pipeline.node("history"), "stored_history")
