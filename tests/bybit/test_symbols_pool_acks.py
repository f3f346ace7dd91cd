"""Behaviours 2 (symbols), 3 (connection pool, spot chunks, pacing) and 4 (acks)."""

from __future__ import annotations

import logging
import random
import re
import socket

import pytest
import trio
from bybit.harness import make_source, run_source

from streamer._api import FatalError
from streamer._backoff import Backoff
from streamer._events import Trade
from streamer_bybit.connection import ConnectPacer
from streamer_bybit.simulator import FakeBybit
from streamer_bybit.source import pool_topics


def dead_port() -> int:
    """A local port where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unknown_symbols_reported_by_name_and_left_out(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    source = make_source(fake_bybit, symbols=["btcusdt", "NOPEUSDT", "NEWCOINUSDT"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert fake_bybit.connections[0].topics == {"publicTrade.BTCUSDT"}
            nursery.cancel_scope.cancel()
    assert source.symbols == ["BTCUSDT"]
    assert source.unknown_symbols == ["NOPEUSDT", "NEWCOINUSDT"]  # NEWCOIN is PreLaunch
    assert "NOPEUSDT, NEWCOINUSDT" in caplog.text


async def test_only_unknown_symbols_is_fatal(fake_bybit, collector):
    source = make_source(fake_bybit, symbols=["NOPEUSDT"])
    with trio.fail_after(10), pytest.raises(FatalError, match="NOPEUSDT"):
        await source.run(collector)


async def test_load_all_symbols_follows_linear_cursor_pages(collector):
    fake = FakeBybit(linear_symbols=[f"S{i:04d}USDT" for i in range(1500)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, load_all_symbols=True)
            symbols = await source.resolve_symbols()
            nursery.cancel_scope.cancel()
    assert len(symbols) == 1500 and "NEWCOINUSDT" not in symbols  # status Trading only
    pages = [q for path, q in fake.rest_requests if path == "/v5/market/instruments-info"]
    assert len(pages) == 2 and pages[0]["limit"] == "1000" and pages[1]["cursor"]


async def test_load_all_symbols_limit_and_spot(fake_bybit, collector):
    source = make_source(fake_bybit, "spot", load_all_symbols=True, symbols_limit=3)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            nursery.cancel_scope.cancel()
    assert source.symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert "cursor" not in str(fake_bybit.rest_requests)


async def test_rest_down_explicit_list_streams_unchecked(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    port = dead_port()
    source = make_source(fake_bybit, symbols=["BTCUSDT"], rest_url=f"http://127.0.0.1:{port}")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            nursery.cancel_scope.cancel()
    assert f"cannot check the symbols against 127.0.0.1:{port}" in caplog.text
    assert "streaming BTCUSDT unchecked" in caplog.text


async def test_rest_down_load_all_logs_and_retries(fake_bybit, collector, caplog, autojump_clock):
    caplog.set_level(logging.WARNING)
    fake_bybit.reachable = False
    source = make_source(fake_bybit, load_all_symbols=True, symbols_limit=1)
    source.symbols_backoff = Backoff(initial=1.0, maximum=30, rng=random.Random(5))
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            nursery.start_soon(source.run, collector)
            await trio.sleep(60)
            # The 503s come at once; the seeded delays put the asks at 0, 0.62, 2.11, 5.29,
            # 12.83, 24.67, 52.33 and 53.21 s; the next one (67.17 s) is past the 60 s.
            assert source.metrics["rest_failures"] == 8
            assert re.findall(r"next retry in ([\d.]+) s", caplog.text) == [
                "0.6", "1.5", "3.2", "7.5", "11.8", "27.7", "0.9", "14.0"
            ]
            assert "cannot load the linear instruments from 127.0.0.1" in caplog.text
            fake_bybit.reachable = True
            await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            # subscribed once the ninth ask (at 67.17 s) found REST back
            assert trio.current_time() - started == pytest.approx(67.173816, abs=1e-6)
            nursery.cancel_scope.cancel()


async def test_websocket_unreachable_is_logged_and_retried(
    fake_bybit, collector, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    port = dead_port()
    url = f"ws://127.0.0.1:{port}/v5/public/linear"
    source = make_source(fake_bybit, symbols=["BTCUSDT"], url=url, reconnect_max_delay=8)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            nursery.start_soon(source.run, collector)
            # Seed the reconnect jitter before the first attempt: the connection exists once
            # the symbols are resolved, and connects in a later task (checkpoints cost no
            # virtual time, so the clock stands still meanwhile).
            while not source.connections:
                await trio.lowlevel.checkpoint()
            conn = source.connections[0]
            assert conn.metrics["connect_failures"] == 0
            conn.backoff = Backoff(conn.backoff.initial, conn.backoff.maximum,
                                   conn.backoff.factor, rng=random.Random(5))
            await trio.sleep_until(started + 120)
            # A refused connect costs no virtual time, so the attempts are at the running
            # sums of random.Random(5).uniform(0, min(8, 0.5 * 2**n)), n = 0, 1, ...: the
            # 34th at 119.01 s, the 35th at 126.70 s (the connect pacer's 1.5/s never
            # binds). A cap of 2 s instead of 8 s makes it 122.
            assert source.metrics["connect_failures"] == 34
            assert f"cannot connect to {url}" in caplog.text and "next retry in" in caplog.text
            second = FakeBybit(linear_symbols=["BTCUSDT"], port=port)
            await nursery.start(second.serve)
            await second.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            nursery.cancel_scope.cancel()


def test_pool_respects_topic_count_and_args_length():
    # 12 + 200 + len(str(i)) characters, each counted +3 (quotes and comma): 216 for i < 10,
    # 217 for i < 100, 218 from 100. A pool closes before the topic that would bring it to
    # 21,000: 10 * 216 + 86 * 217 = 20,822 (+217 >= 21,000), so 96 topics; then
    # 4 * 217 + 92 * 218 = 20,924, 96 again; then 96 * 218 = 20,928; 12 remain.
    topics = [f"publicTrade.{'X' * 200}{i}" for i in range(300)]
    assert pool_topics(topics, 100) == [topics[0:96], topics[96:192], topics[192:288],
                                        topics[288:300]]
    # Short topics: the count splits them.
    short = [f"publicTrade.S{i}" for i in range(250)]
    assert pool_topics(short, 100) == [short[0:100], short[100:200], short[200:250]]


def test_pool_args_stay_under_21000_characters_at_the_edge():
    # 100 topics costing 210 (207 characters + 3) make 21,000 exactly: the limit is "under".
    topics = [f"publicTrade.{i:03d}{'Y' * 192}" for i in range(100)]
    assert {len(t) + 3 for t in topics} == {210}
    assert pool_topics(topics, 100) == [topics[:99], topics[99:]]
    assert pool_topics(topics[:99], 100) == [topics[:99]]  # 20,790


async def test_topics_spread_over_connections(fake_bybit, collector):
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    source = make_source(
        fake_bybit, symbols=symbols, streams=["trades", "tickers"], topics_per_connection=3
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            conns = [c for c in fake_bybit.connections if c.category == "linear"]
            assert len(conns) == 3
            assert all(len(c.topics) <= 3 for c in conns)
            assert set().union(*(c.topics for c in conns)) == {
                f"{k}.{s}" for k in ("publicTrade", "tickers") for s in symbols
            }
            for s in symbols:
                fake_bybit.trade("linear", s)
            await collector.wait_for(lambda ev: len([e for e in ev if isinstance(e, Trade)]) == 4)
            nursery.cancel_scope.cancel()


async def test_spot_subscribes_at_most_10_args_per_request(fake_bybit, collector):
    source = make_source(
        fake_bybit,
        "spot",
        symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"],
        streams=["trades", "klines", "tickers"],
        kline_intervals=["1m", "5m", "1h"],
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            (conn,) = source.connections
            assert len(fake_bybit.connections[0].topics) == 20
            assert conn.subscription.requests == 2 and conn.refused == {}  # 10 + 10, never refused
            fake_bybit.drop_connections()
            await conn.subscribed.wait()  # the old session's event is already set
            while conn.sessions < 2:
                await trio.sleep(0.01)
            await fake_bybit.wait_subscribed("spot", fake_bybit.connections[0].topics)
            # resubscribed in chunks too
            assert conn.subscription.requests == 4 and conn.refused == {}
            nursery.cancel_scope.cancel()


async def test_connections_open_at_a_paced_rate(fake_bybit, collector, autojump_clock):
    source = make_source(
        fake_bybit,
        symbols=[
            "BTCUSDT",
            "ETHUSDT",
            "SOLUSDT",
            "XRPUSDT",
            "DOGEUSDT",
            "BNBUSDT",
            "ADAUSDT",
            "1000PEPEUSDT",
        ],
        topics_per_connection=1,
        connect_rate=2.0,
    )
    opened_at: list[float] = []

    async def watch_connections(start: float) -> None:
        # Virtual time: the polls cost nothing, and a connection is seen within one poll.
        while len(opened_at) < 8:
            while fake_bybit.total_connections_opened > len(opened_at):
                opened_at.append(round(trio.current_time() - start, 1))
            await trio.sleep(0.01)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_connections, trio.current_time())
            await run_source(nursery, source, collector)
            while len(opened_at) < 8:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert len(source.connections) == 8
    assert opened_at == [0, 0, 0, 0, 0, 0.5, 1.0, 1.5]  # a burst of 5, then 2 per second


async def test_pacer_burst_then_rate(autojump_clock):
    pacer = ConnectPacer(rate=1.0, burst=5)
    start = trio.current_time()
    times = []
    for _ in range(8):
        await pacer.wait()
        times.append(round(trio.current_time() - start, 6))
    assert times == [0, 0, 0, 0, 0, 1, 2, 3]


async def test_refused_topic_isolated_by_bisecting_linear(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    fake_bybit.refused_topics = {"publicTrade.ETHUSDT"}
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
    source = make_source(fake_bybit, symbols=symbols)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "SOLUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            assert fake_bybit.connections[0].topics == {
                f"publicTrade.{s}" for s in symbols if s != "ETHUSDT"
            }
            nursery.cancel_scope.cancel()
    (conn,) = source.connections
    assert conn.refused == {
        "publicTrade.ETHUSDT": "error:handler not found,topic:publicTrade.ETHUSDT"
    }
    assert "error:handler not found,topic:publicTrade.ETHUSDT" in caplog.text
    assert source.metrics["refused_topics"] == 1


async def test_refused_topic_isolated_spot(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    fake_bybit.refused_topics = {"tickers.BTCUSDT"}
    source = make_source(
        fake_bybit, "spot", symbols=["BTCUSDT", "ETHUSDT"], streams=["trades", "tickers"]
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert fake_bybit.connections[0].topics == {
                "publicTrade.BTCUSDT",
                "publicTrade.ETHUSDT",
                "tickers.ETHUSDT",
            }
            nursery.cancel_scope.cancel()
    assert list(source.connections[0].refused) == ["tickers.BTCUSDT"]
    assert "Invalid symbol :[tickers.BTCUSDT]" in caplog.text


async def test_already_subscribed_is_harmless(fake_bybit, collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            (conn,) = source.connections
            assert conn._ws is not None
            # one topic already subscribed in the batch: Bybit refuses the whole request
            await conn.subscription.subscribe(conn._ws, ["publicTrade.BTCUSDT", "tickers.BTCUSDT"])
            assert fake_bybit.connections[0].topics == {"publicTrade.BTCUSDT", "tickers.BTCUSDT"}
            nursery.cancel_scope.cancel()
    assert conn.refused == {}
