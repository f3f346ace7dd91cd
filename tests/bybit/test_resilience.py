"""Behaviours 5 (heartbeat, stale), 6 (reconnect), 7 (gap recovery), 10 (malformed)."""

from __future__ import annotations

import logging
import random

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._api import StreamGap
from streamer._backoff import Backoff
from streamer._events import Ticker, Trade
from streamer_bybit.simulator import FakeBybit


async def wait_sessions(source, n: int) -> None:
    while any(c.sessions < n for c in source.connections):
        await trio.sleep(0.01)


async def test_ping_every_20_s_and_pongs_keep_it_alive(fake_bybit, collector, autojump_clock):
    source = make_source(fake_bybit, symbols=["BTCUSDT"])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            conn = fake_bybit.connections[0]
            start = trio.current_time()
            await trio.sleep(61)
            assert conn.pings_received == 3
            await trio.sleep(300 - (trio.current_time() - start))
            # no data at all for 5 minutes, but pongs answer: the connection lives on
            assert fake_bybit.total_connections_opened == 1
            assert source.metrics["reconnects"] == 0
            nursery.cancel_scope.cancel()


async def test_stale_connection_reconnects(fake_bybit, collector, caplog, autojump_clock):
    caplog.set_level(logging.WARNING)
    source = make_source(fake_bybit, symbols=["BTCUSDT"], stale_timeout=30)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            # The subscribe ack is the last thing heard: silence starts now.
            fake_bybit.ignore_pings = True
            lost_at = trio.current_time()
            await trio.sleep_until(lost_at + 30 - 0.001)
            assert source.metrics["stale"] == 0
            await trio.sleep(0.002)
            assert source.metrics["stale"] == 1  # 30 s to the millisecond
            fake_bybit.ignore_pings = False
            await wait_sessions(source, 2)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            nursery.cancel_scope.cancel()
    assert "no data and no pong for 30 s" in caplog.text
    assert fake_bybit.total_connections_opened == 2


async def test_reconnect_resubscribes_and_logs_cause(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], recover_gaps=False)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.drop_connections()
            await wait_sessions(source, 2)
            await fake_bybit.wait_subscribed(
                "linear", ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"]
            )
            fake_bybit.trade("linear", "ETHUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            nursery.cancel_scope.cancel()
    assert source.metrics["reconnects"] == 1
    assert "connection to ws://127.0.0.1" in caplog.text
    assert "lost (WebSocketClosed: connection" in caplog.text  # reset, or closed without a frame


async def test_clean_close_backs_off(fake_bybit, collector, caplog, autojump_clock):
    caplog.set_level(logging.WARNING)
    source = make_source(fake_bybit, symbols=["BTCUSDT"], recover_gaps=False)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            conn = source.connections[0]
            conn.backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))
            gaps = []
            for _ in range(6):
                closed_at = trio.current_time()
                fake_bybit.close_connections(code=1000)
                await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
                gaps.append(trio.current_time() - closed_at)
            nursery.cancel_scope.cancel()
    # Each session ended at once, so the backoff was never reset: the n-th delay is drawn
    # from [0, 0.5 * 2**n]. The values are random.Random(5).uniform(0, 0.5 * 2**n) for
    # n = 0..5, written out so that a change of the draw or of the doubling shows here.
    # Each gap also holds the 5 ms coalescing wait (coalesce_ms's default) after the read
    # that carried the close frame; connecting to the fake costs no virtual time.
    delays = [0.311451, 0.741787, 1.590387, 3.769801, 5.919189, 14.7572]
    assert gaps == pytest.approx([0.005 + d for d in delays], abs=1e-6)
    assert source.metrics["reconnects"] == 6
    assert "server closed the connection (code 1000" in caplog.text


async def test_other_connections_keep_streaming(fake_bybit, collector):
    source = make_source(
        fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], topics_per_connection=1, recover_gaps=False
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            btc = source.connections[0]
            assert btc.topics == ["publicTrade.BTCUSDT"]
            btc.backoff = Backoff(initial=5, maximum=5, jitter=False)  # stays down 5 s
            next(c for c in fake_bybit.connections if "publicTrade.BTCUSDT" in c.topics).drop()
            while source.metrics["reconnects"] == 0:
                await trio.sleep(0.001)
            # BTC's connection is waiting out its backoff; ETH's streams on meanwhile
            fake_bybit.trade("linear", "ETHUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            assert btc._ws is None and btc.sessions == 1
            nursery.cancel_scope.cancel()


async def test_ticker_state_reset_on_resubscribe(fake_bybit, collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["tickers"])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            await collector.wait_for(lambda ev: len(ev) == 1)
            fake_bybit.drop_connections()
            # changed while disconnected: only the fresh snapshot after resubscribe shows it
            fake_bybit.set_ticker("linear", "BTCUSDT", lastPrice="123.5", fundingRate="")
            await wait_sessions(source, 2)
            await collector.wait_for(lambda ev: len(ev) == 2)
            nursery.cancel_scope.cancel()
    _first, second = collector.of(Ticker)
    assert second.fields["lastPrice"] == 123.5 and second.fields["fundingRate"] == ""
    assert set(second.fields) == set(fake_bybit.ticker("linear", "BTCUSDT"))


async def test_delta_before_snapshot_dropped_and_counted(fake_bybit, collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["tickers"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            source.connections[0].book.reset()  # as if the snapshot had not arrived yet
            fake_bybit.send_raw(
                "linear",
                '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT",'
                '"lastPrice":"1"},"cs":1,"ts":1}',
            )
            fake_bybit.trade("linear", "BTCUSDT")  # not subscribed: nothing; just a marker
            while source.metrics["ticker_delta_before_snapshot"] == 0:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert collector.of(Ticker) == [collector.events[0]]  # only the subscribe snapshot


async def test_gap_recovered_in_order_without_duplicates(
    fake_bybit, collector, caplog, autojump_clock
):
    caplog.set_level(logging.INFO)
    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"])
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT", count=5, ts=1_000)
            fake_bybit.trade("linear", "ETHUSDT", count=2, ts=1_000)
            await collector.wait_for(lambda ev: len(ev) == 7)
            fake_bybit.pause_topic("linear", "publicTrade.BTCUSDT")
            # same T as the last emitted trades: only ids tell them apart
            fake_bybit.trade("linear", "BTCUSDT", count=3, ts=1_000)
            fake_bybit.trade("linear", "BTCUSDT", count=4, ts=2_000)
            await fake_bybit.flush()
            fake_bybit.drop_connections()
            fake_bybit.resume_topic("linear", "publicTrade.BTCUSDT")
            await wait_sessions(source, 2)
            await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            fake_bybit.trade("linear", "BTCUSDT", count=2, ts=3_000)
            await collector.wait_for(lambda ev: len([e for e in ev if e.symbol == "BTCUSDT"]) == 14)
            # ETH has no live trade to check REST against: it waits for rest_lag_max.
            while len(collector.gaps) < 2:
                await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    btc = [e.trade_id for e in collector.of(Trade) if e.symbol == "BTCUSDT"]
    assert btc == [t["i"] for t in fake_bybit.history("linear", "BTCUSDT")]
    assert source.metrics["recovered_trades"] == 7
    assert source.metrics["trade_gaps"] == 0
    # Downstream transforms heard of the gap when the connection dropped, and of its end
    # only once the recovered trades had been emitted.
    symbols = ("BTCUSDT", "ETHUSDT")
    assert collector.gaps == [StreamGap("linear", symbols, 1_000),
                              StreamGap("linear", symbols, 1_000, closed=True, complete=True)]
    # The end came after ETH's wait for rest_lag_max, when all 16 trades (14 BTC, 2 ETH)
    # were out, the 7 recovered among them.
    assert collector.gap_positions == [7, 16]
    assert "recovered 7 missed trades from REST" in caplog.text


async def test_unrecoverable_gap_logged_with_its_span(collector, caplog, autojump_clock):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(spot_symbols=["BTCUSDT"])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, "spot", symbols=["BTCUSDT"])
            await run_source(nursery, source, collector)
            fake.trade("spot", "BTCUSDT", ts=10_000)
            await collector.wait_for(lambda ev: len(ev) == 1)
            fake.pause_topic("spot", "publicTrade.BTCUSDT")
            for i in range(100):  # more than spot's recent-trade limit of 60
                fake.trade("spot", "BTCUSDT", ts=20_000 + i)
            await fake.flush()
            fake.drop_connections()
            fake.resume_topic("spot", "publicTrade.BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 61)
            nursery.cancel_scope.cancel()
    ids = [t.trade_id for t in collector.of(Trade)]
    history = [t["i"] for t in fake.history("spot", "BTCUSDT")]
    assert ids == history[:1] + history[-60:]
    assert source.metrics["trade_gaps"] == 1
    assert ("trade gap for BTCUSDT: trades between 10000 and 20040 (10.0 s, about "
            in caplog.text)
    assert collector.gaps == [StreamGap("spot", ("BTCUSDT",), 10_000),
                              StreamGap("spot", ("BTCUSDT",), 10_000, closed=True,
                                        complete=False)]


async def test_malformed_and_unexpected_counted_stream_goes_on(fake_bybit, collector, caplog):
    caplog.set_level(logging.WARNING)
    source = make_source(fake_bybit, symbols=["BTCUSDT"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.send_raw("linear", "not json at all")
            fake_bybit.send_raw("linear", b"\xff\xfe broken utf-8")
            fake_bybit.send_raw("linear", '{"topic":"publicTrade.BTCUSDT","data":[{"x":1}]}')
            fake_bybit.send_raw("linear", '{"topic":"orderbook.1.BTCUSDT","data":{}}')
            fake_bybit.send_raw("linear", '{"hello":"world"}')
            fake_bybit.send_raw("linear", b"\x00\x01", binary=True)
            for _ in range(20):
                fake_bybit.send_raw("linear", "[1,2")
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            nursery.cancel_scope.cancel()
    m = source.metrics
    assert m["malformed"] == 23
    assert (m["unknown_topic"], m["unexpected"], m["unexpected_binary"]) == (1, 1, 1)
    assert m["reconnects"] == 0
    malformed_lines = [r for r in caplog.records if "malformed message" in r.getMessage()]
    assert len(malformed_lines) == 1  # rate-limited


class BlockingCollector(Collector):
    """An emit that blocks while ``gate`` is set, as one feeding a full "block" sink does."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None
        self.blocked = trio.Event()

    async def __call__(self, batch):
        if self.gate is not None:
            self.blocked.set()
            await self.gate.wait()
        await super().__call__(batch)


async def test_emit_blocked_downstream_is_neither_stale_nor_cut(fake_bybit, autojump_clock):
    collector = BlockingCollector()
    source = make_source(fake_bybit, symbols=["BTCUSDT"])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            collector.gate = trio.Event()
            fake_bybit.trade("linear", "BTCUSDT", count=2)
            await collector.blocked.wait()
            await trio.sleep(100)  # blocked far past stale_timeout (30 s)
            gate, collector.gate = collector.gate, None
            gate.set()
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 4)
            nursery.cancel_scope.cancel()
    assert [e.trade_id for e in collector.of(Trade)] == [
        t["i"] for t in fake_bybit.history("linear", "BTCUSDT")
    ]
    assert source.metrics["stale"] == 0
    assert source.metrics["reconnects"] == 0
