"""A live run that follows the instrument list (symbols = "all") while it captures: a symbol
listed meanwhile gets a connection of its own, another is delisted. The replay emits the
same events, the listed symbol's trades, tickers and books included, and the delisted
symbol's end (the aggregator closes its candle at that moment, as live)."""

from __future__ import annotations

import trio
import trio.testing
from bybit.harness import Collector, make_source, run_source
from pipelines import collect_sink, klines_partial

from streamer import Book, Kline, Ticker, Trade
from streamer_bybit.simulator import FakeBybit
from streamer_bybit.simulator.listings import delist_symbol, list_symbol

from .helpers import replay_run

REFRESH = 10.0
OUT = klines_partial(intervals=["1h"]) + collect_sink(inputs=["bybit", "klines"])

async def _live(capture) -> tuple[Collector, int]:
    collector = Collector()
    fake = FakeBybit(linear_symbols=["BTCUSDT", "ETHUSDT"], seed=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        source = make_source(fake, symbols="all", refresh_symbols_s=REFRESH,
                             streams=["trades", "tickers", "orderbook"], book_depth=50,
                             book_stale_s=60, topics_per_connection=3, coalesce_ms=0,
                             recover_gaps=False,
                             capture_dir=str(capture))
        await run_source(nursery, source, collector)

        async def market(symbols: list[str]) -> None:
            for k in range(3):
                for symbol in symbols:
                    fake.trade("linear", symbol, count=1 + k)
                    fake.push_book("linear", f"orderbook.50.{symbol}")
                    fake.set_ticker("linear", symbol, lastPrice=str(100 + k))
                await trio.sleep(0.5)

        await market(["BTCUSDT", "ETHUSDT"])
        list_symbol(fake, "linear", "NEWUSDT")  # no room left: a connection of its own
        await fake.wait_subscribed("linear", ["orderbook.50.NEWUSDT"])
        await market(["BTCUSDT", "ETHUSDT", "NEWUSDT"])
        delist_symbol(fake, "linear", "ETHUSDT")
        while fake.subscribers("linear", "publicTrade.ETHUSDT"):
            await fake._sub_changed.park()
        await market(["BTCUSDT", "NEWUSDT"])
        connections = len(source.connections)
        assert source.metrics["symbols_listed"] == 1
        assert source.metrics["symbols_delisted"] == 1
        fake.stop()
        nursery.cancel_scope.cancel()
    return collector, connections


def test_a_replay_reproduces_a_listed_symbols_connection_and_a_delisting(tmp_path):
    live, connections = trio.run(_live, tmp_path,
                                 clock=trio.testing.MockClock(autojump_threshold=0))
    assert connections == 3  # the listing's connection is the third
    replayed, pipeline = replay_run(tmp_path, OUT)
    events = [e for e in replayed if not isinstance(e, Kline)]
    assert events == live.events
    new = [e for e in events if e.symbol == "NEWUSDT"]
    assert {type(e) for e in new} == {Trade, Ticker, Book}
    assert len([e for e in new if isinstance(e, Trade)]) == 12
    metrics = pipeline.metrics()
    assert metrics["bybit"].get("malformed", 0) == 0
    assert metrics["bybit"].get("unknown_topic", 0) == 0
    # The delisting's end is in the capture: ETHUSDT's open hour closed when it ended.
    assert metrics["klines"]["symbols_ended"] == 1
    eth = [k for k in replayed if isinstance(k, Kline) and k.symbol == "ETHUSDT"]
    assert len(eth) == 1 and eth[0].closed and eth[0].trade_count == 12
