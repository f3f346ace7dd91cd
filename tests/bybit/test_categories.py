"""bybit.inverse and bybit.option against the simulator: instruments (options per base coin,
paged), trades once each across forced reconnects, option messages of 1024 trades, option
acks (COMMAND_RESP) and tickers with the greeks."""

from __future__ import annotations

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._api import StreamGap
from streamer._events import Ticker, Trade
from streamer_bybit.categories import MAX_OPTION_COINS
from streamer_bybit.config import BybitOptionConfig

INVERSE = ["BTCUSD", "ETHUSD"]


def add_options(fake, coin: str, n: int, status: str = "Trading", expiry: str = "26DEC26"
                ) -> list[str]:
    """``n`` option symbols of ``coin`` (calls and puts at rising strikes)."""
    out = []
    for k in range(n):
        symbol = f"{coin}-{expiry}-{1000 + 10 * (k // 2)}-{'CP'[k % 2]}"
        fake.add_symbol("option", symbol, status=status)
        out.append(symbol)
    return out


async def wait_sessions(source, n: int) -> None:
    while min(c.sessions for c in source.connections) < n:
        await trio.sleep(0.01)


async def test_inverse_trades_once_across_reconnects(fake_bybit, collector: Collector,
                                                      autojump_clock):
    for symbol in INVERSE:
        fake_bybit.add_symbol("inverse", symbol)
    source = make_source(fake_bybit, "inverse", symbols=INVERSE, streams=["trades"],
                         topics_per_connection=1)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            for rnd in range(3):
                fake_bybit.trade("inverse", "BTCUSD", count=4, ts=10_000 * rnd + 1_000)
                fake_bybit.trade("inverse", "ETHUSD", count=2, ts=10_000 * rnd + 1_000)
                # Missed while the connections are down: recovered from REST.
                fake_bybit.pause_topic("inverse", "publicTrade.BTCUSD")
                fake_bybit.trade("inverse", "BTCUSD", count=3, ts=10_000 * rnd + 1_500)
                await fake_bybit.flush()
                fake_bybit.drop_connections("inverse")
                fake_bybit.resume_topic("inverse", "publicTrade.BTCUSD")
                await wait_sessions(source, rnd + 2)
                fake_bybit.trade("inverse", "BTCUSD", count=1, ts=10_000 * rnd + 1_600)
                fake_bybit.trade("inverse", "ETHUSD", count=1, ts=10_000 * rnd + 1_600)
                # Each connection's gap closes (recovered) before the next drop.
                while sum(g.closed for g in collector.gaps) < 2 * (rnd + 1):
                    await trio.sleep(0.1)
            await collector.wait_for(lambda ev: len(ev) == 3 * (4 + 2 + 3 + 1 + 1))
            nursery.cancel_scope.cancel()
    for symbol in INVERSE:
        got = [t.trade_id for t in collector.of(Trade) if t.symbol == symbol]
        assert got == [t["i"] for t in fake_bybit.history("inverse", symbol)]
    assert {t.channel for t in collector.of(Trade)} == {"inverse"}
    assert source.metrics["recovered_trades"] == 9
    assert source.metrics["trade_gaps"] == 0
    assert len(collector.gaps) == 12
    assert all(g.channel == "inverse" and g.complete for g in collector.gaps)


async def test_option_instruments_paged_per_base_coin(fake_bybit):
    btc = add_options(fake_bybit, "BTC", 510)  # two pages of 500
    eth = add_options(fake_bybit, "ETH", 4)
    add_options(fake_bybit, "SOL", 2)
    add_options(fake_bybit, "ETH", 1, status="Closed", expiry="27MAR26")
    source = make_source(fake_bybit, "option", load_all_symbols=True, streams=["trades"],
                         base_coins=["btc", "ETH"])
    with trio.fail_after(10):
        symbols = await source.resolve_symbols()
    assert symbols == btc + eth
    asked = [(q.get("baseCoin"), "cursor" in q) for p, q in fake_bybit.rest_requests
             if p == "/v5/market/instruments-info"]
    assert asked == [("BTC", False), ("BTC", True), ("ETH", False)]


async def test_options_of_every_base_coin_bybit_lists_by_default(fake_bybit):
    btc = add_options(fake_bybit, "BTC", 2)
    xrp = add_options(fake_bybit, "XRP", 3)
    add_options(fake_bybit, "DOGE", 2, status="Closed")  # listed coin, no option trading
    eth = add_options(fake_bybit, "ETH", 1)
    source = make_source(fake_bybit, "option", load_all_symbols=True, streams=["trades"])
    with trio.fail_after(10):
        symbols = await source.resolve_symbols()
    assert symbols == btc + xrp + eth
    asked = [(p, q.get("baseCoin")) for p, q in fake_bybit.rest_requests]
    assert asked == [("/v5/market/option-base-coins", None),
                     *[("/v5/market/instruments-info", c) for c in ("BTC", "XRP", "ETH")]]
    assert source.option_coins == {s: s.partition("-")[0] for s in symbols}


async def test_option_base_coins_fall_back_when_bybit_cannot_tell(fake_bybit, caplog):
    add_options(fake_bybit, "BTC", 1)
    add_options(fake_bybit, "XRP", 1)
    fake_bybit.rest_failing.add("/v5/market/option-base-coins")  # HTTP 503
    source = make_source(fake_bybit, "option", load_all_symbols=True, streams=["trades"])
    with trio.fail_after(10):
        symbols = await source.resolve_symbols()
    assert symbols == ["BTC-26DEC26-1000-C"]  # read BTC, ETH, SOL: XRP unknown
    assert [q.get("baseCoin") for p, q in fake_bybit.rest_requests
            if p == "/v5/market/instruments-info"] == ["BTC", "ETH", "SOL"]
    assert source.metrics["rest_failures"] == 1
    assert "cannot list Bybit's option base coins" in caplog.text
    # An answer naming no coin: the same list, logged.
    fake_bybit.rest_failing.clear()
    fake_bybit.rest_bodies["/v5/market/option-base-coins"] = [
        b'{"retCode":0,"retMsg":"OK","result":{"list":[]},"time":1}']
    with trio.fail_after(10):
        assert await source.resolve_symbols() == ["BTC-26DEC26-1000-C"]
    assert "Bybit lists no option base coin" in caplog.text


async def test_option_base_coins_past_the_ceiling_are_left_out_and_counted(fake_bybit,
                                                                          caplog):
    coins = [f"C{n:03d}" for n in range(MAX_OPTION_COINS + 3)]
    for coin in coins:
        add_options(fake_bybit, coin, 1)
    source = make_source(fake_bybit, "option", load_all_symbols=True, streams=["trades"])
    with trio.fail_after(60):
        symbols = await source.resolve_symbols()
    assert [s.partition("-")[0] for s in symbols] == coins[:MAX_OPTION_COINS]
    assert source.metrics["option_coins_left_out"] == 3
    assert f"Bybit lists {MAX_OPTION_COINS + 3} option base coins" in caplog.text


def test_option_config_defaults_and_refusals():
    config = BybitOptionConfig(symbols=["BTC-26DEC26-1000-C"])
    assert config.base_coins is None  # every coin Bybit lists
    with pytest.raises(ValueError, match='"klines" is not a Bybit option topic'):
        BybitOptionConfig(load_all_symbols=True, streams=["klines"])
    with pytest.raises(ValueError, match="split by base_coins"):
        BybitOptionConfig(load_all_symbols=True, shard="0/2")
    with pytest.raises(ValueError, match="base_coins is empty"):
        BybitOptionConfig(load_all_symbols=True, base_coins=[])


async def test_option_trades_per_coin_1024_per_message_and_gaps(fake_bybit,
                                                                 collector: Collector,
                                                                 autojump_clock):
    btc = add_options(fake_bybit, "BTC", 6)
    eth = add_options(fake_bybit, "ETH", 2)
    source = make_source(fake_bybit, "option", load_all_symbols=True, streams=["trades"],
                         base_coins=["BTC", "ETH"], topics_per_connection=1)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert sorted(c.topics[0] for c in source.connections) == [
                "publicTrade.BTC", "publicTrade.ETH"]
            sent = fake_bybit.trade("option", btc[0], count=1024, ts=5_000)
            sent += fake_bybit.trade("option", btc[3], count=7, ts=5_001)
            sent += fake_bybit.trade("option", eth[1], count=2, ts=5_001)
            await collector.wait_for(lambda ev: len(ev) == 1033)
            # A reconnect: options are not recovered per symbol, so the gap says incomplete.
            fake_bybit.drop_connections("option")
            await wait_sessions(source, 2)
            sent += fake_bybit.trade("option", btc[5], count=1024, ts=6_000)
            await collector.wait_for(lambda ev: len(ev) == 2057)
            while len(collector.gaps) < 4:
                await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    trades = collector.of(Trade)
    assert [t.trade_id for t in trades if t.symbol.startswith("BTC")] == [
        t["i"] for t in sent if t["s"].startswith("BTC")]
    assert [t.trade_id for t in trades if t.symbol.startswith("ETH")] == [
        t["i"] for t in sent if t["s"].startswith("ETH")]
    assert len({t.trade_id for t in trades}) == 2057
    assert {t.channel for t in trades} == {"option"}
    first = next(t for t in trades if t.symbol == btc[0])
    assert (first.price, first.size, first.side) == (sent[0]["p"], sent[0]["v"], sent[0]["S"])
    by_symbols = {g.symbols: g for g in collector.gaps if g.closed}
    # since: the oldest of the symbols' newest trades delivered
    assert by_symbols[tuple(btc)] == StreamGap("option", tuple(btc), 5_000, closed=True,
                                               complete=False)
    assert by_symbols[tuple(eth)] == StreamGap("option", tuple(eth), 5_001, closed=True,
                                               complete=False)
    # No REST recent-trade asked: options have no per-symbol recovery.
    assert not [p for p, _ in fake_bybit.rest_requests if p == "/v5/market/recent-trade"]


@pytest.mark.parametrize("with_req_id", [True, False])
async def test_option_tickers_with_greeks_and_refused_topic(fake_bybit, collector: Collector,
                                                            with_req_id):
    fake_bybit.option_acks_without_req_id = not with_req_id
    btc = add_options(fake_bybit, "BTC", 3)
    fake_bybit.refused_topics.add(f"tickers.{btc[1]}")
    source = make_source(fake_bybit, "option", symbols=btc, streams=["tickers", "price"],
                         base_coins=["BTC"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.set_ticker("option", btc[0], markPrice="1234.5", delta="0.61")
            await collector.wait_for(
                lambda ev: any(isinstance(e, Ticker) and e.fields.get("delta") == 0.61
                               for e in ev))
            nursery.cancel_scope.cancel()
    assert source.connections[0].refused == {f"tickers.{btc[1]}": "in failTopics"}
    assert source.metrics["unexpected_reply"] == 0
    tickers = collector.of(Ticker)
    assert {t.symbol for t in tickers} == {btc[0], btc[2]}
    last = [t for t in tickers if t.symbol == btc[0]][-1].fields
    assert last["markPrice"] == 1234.5 and last["underlyingPrice"] == 94100.0
    assert (last["gamma"], last["vega"], last["markPriceIv"]) == (0.0001, 20.0, 0.51)
    assert last["symbol"] == btc[0]


async def test_option_pongs_keep_the_connection_alive(fake_bybit, collector: Collector,
                                                      autojump_clock):
    """The option channel answers a ping with ``{"args": ["<ms>"], "op": "pong"}`` (Bybit's
    docs; no ``success``, ``ret_msg`` or ``conn_id``): taken as a pong, so five quiet minutes
    keep the connection; so is the form with ``req_id`` and ``conn_id`` Bybit documents for
    private channels, and a late ``COMMAND_RESP`` (after its request gave up) is only
    counted as an unexpected reply."""
    btc = add_options(fake_bybit, "BTC", 1)
    source = make_source(fake_bybit, "option", symbols=btc, streams=["trades"],
                         base_coins=["BTC"], stale_timeout=30)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            conn = fake_bybit.connections[0]
            await trio.sleep(301)
            assert conn.pings_received == 15  # one every 20 s
            fake_bybit.ignore_pings = True
            for _ in range(3):  # pongs of the other documented form, every 20 s
                await trio.sleep(20)
                fake_bybit.send_raw("option", b'{"req_id":"test","op":"pong","args":'
                                    b'["1675418560633"],"conn_id":"cfcb4ocsvfriu23r3er0-1b"}')
            fake_bybit.send_raw("option", b'{"success":true,"conn_id":"x","data":{'
                                b'"failTopics":[],"successTopics":["publicTrade.BTC"]},'
                                b'"type":"COMMAND_RESP"}')
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert fake_bybit.total_connections_opened == 1
    assert source.metrics["stale"] == 0 and source.metrics["reconnects"] == 0
    assert source.metrics["unexpected_reply"] == 1
    assert source.metrics["unexpected"] == 0 and source.metrics["malformed"] == 0
