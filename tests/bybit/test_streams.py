"""Behaviour 1 (streams and event shapes), 8 (ticker merge, numbers), one batch per read."""

from __future__ import annotations

import trio
from bybit.harness import Collector, make_source, run_source

from streamer._events import Kline, Price, Ticker, Trade


async def test_trades_keep_bybit_strings_and_wire_order(fake_bybit, collector: Collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT", "ETHUSDT"], streams=["trades"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            sent = fake_bybit.trade("linear", "BTCUSDT", price="65000.5", size="0.25", count=5)
            sent += fake_bybit.trade("linear", "ETHUSDT", count=2)
            await collector.wait_for(lambda ev: len(ev) >= 7)
            nursery.cancel_scope.cancel()
    trades = collector.of(Trade)
    assert [t.trade_id for t in trades] == [t["i"] for t in sent]
    first = trades[0]
    assert first.channel == "linear" and first.symbol == "BTCUSDT"
    assert first.price == sent[0]["p"] and isinstance(first.price, str)
    assert first.size == sent[0]["v"] and first.side == sent[0]["S"] and first.ts == sent[0]["T"]
    assert first.tick_direction == sent[0]["L"]
    assert first.block_trade is False and first.rpi is False and first.seq == sent[0]["seq"]


async def test_spot_trades_without_optional_fields(collector: Collector):
    from streamer_bybit.simulator import FakeBybit

    fake = FakeBybit(spot_symbols=["BTCUSDT"], omit_optional_trade_fields=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, "spot", symbols=["BTCUSDT"], streams=["trades"])
            await run_source(nursery, source, collector)
            sent = fake.trade("spot", "BTCUSDT", count=3)
            await collector.wait_for(lambda ev: len(ev) >= 3)
            nursery.cancel_scope.cancel()
    trades = collector.of(Trade)
    assert [t.trade_id for t in trades] == [t["i"] for t in sent]
    assert all(
        t.channel == "spot" and t.tick_direction is None and t.seq is None and t.rpi is None
        for t in trades
    )


async def test_klines_from_bybit_kline_topic(fake_bybit, collector: Collector):
    source = make_source(
        fake_bybit, symbols=["BTCUSDT"], streams=["klines"], kline_intervals=["1m", "1D"]
    )
    base = 1_700_000_080_000  # 40 s into a minute
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT", price="100", size="2", ts=base)
            fake_bybit.trade("linear", "BTCUSDT", price="110", size="1", ts=base + 1000)
            fake_bybit.trade("linear", "BTCUSDT", price="90", size="1", ts=base + 30_000)
            await collector.wait_for(lambda ev: any(isinstance(e, Kline) and e.closed for e in ev))
            nursery.cancel_scope.cancel()
    klines = collector.of(Kline)
    assert {k.interval for k in klines} == {60_000, 86_400_000}
    closed = [k for k in klines if k.closed]
    assert len(closed) == 1
    k = closed[0]
    assert k.symbol == "BTCUSDT" and k.channel == "linear"
    assert k.timestamp == base - base % 60_000
    assert (k.open, k.high, k.low, k.close, k.volume) == (100.0, 110.0, 100.0, 110.0, 3.0)
    assert k.trade_count is None and k.turnover == 310.0
    assert all(isinstance(v, float) for v in (k.open, k.high, k.low, k.close, k.volume))
    assert any(not x.closed and x.interval == 60_000 and x.open == 90.0 for x in klines)


async def test_linear_tickers_merged_and_price_from_mark(fake_bybit, collector: Collector):
    fake_bybit.set_ticker("linear", "BTCUSDT", markPrice="100.5", lastPrice="100.4")
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["tickers", "price"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            await collector.wait_for(lambda ev: len(ev) >= 2)  # snapshot ticker + price
            fake_bybit.set_ticker("linear", "BTCUSDT", lastPrice="101")  # mark unchanged
            fake_bybit.set_ticker("linear", "BTCUSDT", markPrice="101.5")
            await collector.wait_for(lambda ev: len([e for e in ev if isinstance(e, Ticker)]) >= 3)
            nursery.cancel_scope.cancel()
    tickers = collector.of(Ticker)
    snapshot = fake_bybit.ticker("linear", "BTCUSDT")
    last = tickers[-1]
    assert last.symbol == "BTCUSDT" and last.channel == "linear"
    # every field of the snapshot is present after merging deltas, numbers as floats
    assert set(last.fields) == set(snapshot)
    assert last.fields["lastPrice"] == 101.0 and last.fields["markPrice"] == 101.5
    for key, value in snapshot.items():
        if value == "":
            assert last.fields[key] == ""
    assert tickers[1].fields["lastPrice"] == 101.0 and tickers[1].fields["markPrice"] == 100.5
    prices = collector.of(Price)
    assert [p.price for p in prices] == [100.5, 101.5]  # only when the mark price changes


async def test_spot_tickers_and_price_from_last_price(fake_bybit, collector: Collector):
    fake_bybit.set_ticker("spot", "ETHUSDT", lastPrice="2000")
    source = make_source(fake_bybit, "spot", symbols=["ETHUSDT"], streams=["tickers", "price"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.set_ticker("spot", "ETHUSDT", volume24h="5")
            fake_bybit.set_ticker("spot", "ETHUSDT", lastPrice="2001.5")
            await collector.wait_for(lambda ev: len([e for e in ev if isinstance(e, Ticker)]) >= 3)
            nursery.cancel_scope.cancel()
    tickers = collector.of(Ticker)
    assert all("bid1Price" not in t.fields for t in tickers)
    assert tickers[-1].fields["lastPrice"] == 2001.5
    assert [p.price for p in collector.of(Price)] == [2000.0, 2001.5]


async def test_price_from_trades_without_tickers(fake_bybit, collector: Collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["trades", "price"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert not any(t.startswith("tickers.") for t in fake_bybit.connections[0].topics)
            fake_bybit.trade("linear", "BTCUSDT", price="10", count=2)
            fake_bybit.trade("linear", "BTCUSDT", price="10")
            fake_bybit.trade("linear", "BTCUSDT", price="12")
            await collector.wait_for(lambda ev: len([e for e in ev if isinstance(e, Trade)]) >= 4)
            nursery.cancel_scope.cancel()
    assert [p.price for p in collector.of(Price)] == [10.0, 12.0]


async def test_one_emit_per_socket_read(fake_bybit, collector: Collector):
    source = make_source(fake_bybit, symbols=["BTCUSDT"], streams=["trades"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            # 50 messages queued before the fake's writer runs: it writes them in one
            # send_all, so the source reads them in a few socket reads, not 50.
            for _ in range(50):
                fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) >= 50)
            nursery.cancel_scope.cancel()
    assert len(collector.events) == 50
    assert len(collector.batches) <= 3
