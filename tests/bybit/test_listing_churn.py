"""1,000 listings and 1,000 delistings through live discovery (MockClock, the fake Bybit):
bybit.linear (symbols = "all", every stream) -> klines.from_trades -> testing.collect.

Memory stays flat when nothing of a delisted symbol is kept: after the churn, no object
reachable from the source or the aggregator (connections, subscriptions, ticker and price
state, derivatives, liquidations, hold book, recovery marks, order books, candles) still
holds the name of a symbol delisted before the last refresh. That is checked by walking the
object graph, so state kept in a place this test does not name fails it too.
"""

from __future__ import annotations

import gc
import logging
import re
import types
from collections import deque
from collections.abc import Iterable
from typing import Any

import trio

from streamer import Book, Derivatives, Kline, Liquidation, Ticker, Trade
from streamer.testing import CollectingSink, running_pipeline
from streamer_bybit.simulator.liquidations import liquidate
from streamer_bybit.simulator.listings import delist_symbol, list_symbol

REFRESH = 10.0
ROUNDS = 100
PER_ROUND = 10  # listed and delisted per refresh: 1,000 of each over the run
DEFAULT = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "1000PEPEUSDT", "DOGEUSDT", "BNBUSDT",
           "ADAUSDT"]

PIPELINE = """
[[sources]]
name = "src"
type = "bybit.linear"
symbols = "all"
refresh_symbols_s = {refresh}
streams = ["trades", "tickers", "price", "derivatives", "liquidations", "orderbook"]
book_depth = 1
book_stale_s = 3600
topics_per_connection = 25
url = "{ws}"
rest_url = "{rest}"

[[transforms]]
name = "agg"
type = "klines.from_trades"
inputs = ["src"]
intervals = ["1m"]

[[transforms]]
name = "top"
type = "books.top"
inputs = ["src"]
depth = 1

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["agg", "top", "src"]
"""

#: Objects whose referents are not the pipeline's state: code, modules, classes, the
#: logging machinery (log records keep the names logged), suspended frames (locals of the
#: refresh in progress), and the sink that keeps every event on purpose.
_OPAQUE = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType,
           types.FrameType, types.CoroutineType, types.GeneratorType,
           types.AsyncGeneratorType, types.CodeType, logging.Logger, logging.Handler,
           logging.Manager, CollectingSink)


def strings_reachable(roots: Iterable[Any]) -> dict[str, str]:
    """Every string reachable from ``roots`` through the garbage collector's referents
    (not through :data:`_OPAQUE` objects), with the shortest chain of types leading to it."""
    parent: dict[int, tuple[int, str]] = {}
    found: dict[str, str] = {}
    todo = deque((root, 0) for root in roots)
    for root in roots:
        parent[id(root)] = (0, type(root).__name__)

    def path(key: int) -> str:
        names = []
        while key:
            key, name = parent[key]
            names.append(name)
        return " > ".join(reversed(names))

    while todo:
        obj, _ = todo.popleft()
        if isinstance(obj, str):
            found.setdefault(obj, path(id(obj)))
            continue
        if isinstance(obj, _OPAQUE):
            continue
        refs = gc.get_referents(obj)
        if isinstance(obj, dict):  # the collector skips a dict's keys when they are strings
            refs.extend(obj)
        for ref in refs:
            if id(ref) not in parent:
                parent[id(ref)] = (id(obj), type(ref).__name__)
                todo.append((ref, 0))
    return found


def symbol_names(strings: dict[str, str], pattern: re.Pattern[str]) -> dict[str, str]:
    """The listed symbols' names among ``strings`` (a topic names its symbol too)."""
    out: dict[str, str] = {}
    for text, path in strings.items():
        for name in pattern.findall(text):
            out.setdefault(name, path)
    return out


def listed(n: int) -> str:
    return f"L{n:04d}USDT"


async def test_a_thousand_listings_and_delistings_leave_no_state_behind(
        fake_bybit, plugin_manager, autojump_clock):
    toml = PIPELINE.format(refresh=REFRESH, ws=fake_bybit.ws_url("linear"),
                           rest=fake_bybit.rest_url)
    live = list(DEFAULT)
    expected_trades = 0
    with trio.fail_after(ROUNDS * REFRESH * 5):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            source = pipeline.node("src")
            sink: CollectingSink = pipeline.node("out")
            for r in range(ROUNDS):
                new = [listed(r * PER_ROUND + i) for i in range(PER_ROUND)]
                for symbol in new:
                    list_symbol(fake_bybit, "linear", symbol)
                # Bybit refuses one topic of the round: the refusal is kept while listed.
                fake_bybit.refused_topics.add(f"allLiquidation.{new[0]}")
                for symbol in live:
                    delist_symbol(fake_bybit, "linear", symbol)
                gone, live = live, new
                await fake_bybit.wait_subscribed(
                    "linear", [f"publicTrade.{s}" for s in new[:1]])
                while any(not fake_bybit.subscribers("linear", f"orderbook.1.{s}")
                          for s in new) or any(
                        fake_bybit.subscribers("linear", f"publicTrade.{s}") for s in gone):
                    await fake_bybit._sub_changed.park()
                for symbol in new:
                    fake_bybit.trade("linear", symbol, count=2)
                    liquidate(fake_bybit, "linear", symbol)
                expected_trades += 2 * PER_ROUND
                await sink.wait_for(lambda ev, n=expected_trades, r=r: sum(
                    e.__class__ is Trade for e in ev) == n and sum(
                    e.__class__ is Liquidation for e in ev) == (r + 1) * (PER_ROUND - 1))
            # One more refresh with no change: what the last one handled has settled.
            await trio.sleep(REFRESH + 1)
            events = list(sink.events)
            gc.collect()
            # From the source and the transforms (through their contexts: the whole
            # pipeline, its routes and queues, but for the sink that keeps every event).
            reachable = symbol_names(
                strings_reachable([source, pipeline.node("agg"), pipeline.node("top")]),
                re.compile(r"L\d{4}USDT"))
            state = {
                "symbols": len(source.symbols),
                "connections": len(source.connections),
                "topics": sum(len(c.topics) for c in source.connections),
            }
    # Exact: every listed symbol streamed its trades, its ticker, derivatives and book.
    assert source.metrics["symbols_listed"] == ROUNDS * PER_ROUND
    assert source.metrics["symbols_delisted"] == len(DEFAULT) + (ROUNDS - 1) * PER_ROUND
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == expected_trades
    every = {listed(n) for n in range(ROUNDS * PER_ROUND)}
    for kind in (Ticker, Derivatives, Book):
        assert {e.symbol for e in events if isinstance(e, kind)} >= every, kind
    assert {e.symbol for e in events if isinstance(e, Liquidation)} == every - {
        listed(r * PER_ROUND) for r in range(ROUNDS)}
    # The delisted symbols' candles were closed by their ended stream (no minute passed).
    assert {k.symbol for k in events if isinstance(k, Kline)} >= {
        listed(n) for n in range((ROUNDS - 1) * PER_ROUND)}
    assert source.metrics["malformed"] == 0 and source.metrics["book_stale"] == 0
    assert source.metrics["refused_topics"] == ROUNDS
    # No connection reconnected; the room the delistings freed took the listings.
    assert sum(c.reconnects for c in source.connections) == 0
    assert state == {"symbols": PER_ROUND, "connections": 2, "topics": 4 * PER_ROUND}
    # Nothing of the 990 listed symbols delisted is kept anywhere; the walk does reach the
    # state of the ten still listed.
    leaked = {name: path for name, path in reachable.items() if name not in live}
    assert not leaked, (len(leaked), sorted(leaked.items())[:3])
    assert set(reachable) == set(live)
