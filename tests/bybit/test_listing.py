"""Live instrument discovery against the simulator (MockClock): symbols = "all" or a
pattern, re-read every refresh_symbols_s; a listing is subscribed within one period on a
connection with room (or a new one), a delisting unsubscribed, no connection reconnects."""

from __future__ import annotations

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer import StreamGap, Trade
from streamer._config import ConfigError, structure_options
from streamer_bybit.config import BybitLinearConfig
from streamer_bybit.simulator.listings import delist_symbol, list_symbol

REFRESH = 60.0
TRADING = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "1000PEPEUSDT", "DOGEUSDT", "BNBUSDT",
           "ADAUSDT"]


async def wait_topic(fake, topic: str, subscribed: bool) -> float:
    """Wait until ``topic`` has (or no longer has) a subscriber; return the trio time."""
    while bool(fake.subscribers("linear", topic)) != subscribed:
        await fake._sub_changed.park()  # woken by every (un)subscribe
    return trio.current_time()


async def test_listing_and_delisting_while_running(fake_bybit, collector: Collector,
                                                   autojump_clock):
    source = make_source(fake_bybit, symbols="all", refresh_symbols_s=REFRESH,
                         topics_per_connection=3)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert source.symbols == TRADING
            assert [len(c.topics) for c in source.connections] == [3, 3, 2]
            start = trio.current_time()
            for symbol in TRADING:
                fake_bybit.trade("linear", symbol, count=2)
            list_symbol(fake_bybit, "linear", "NEWLISTUSDT")
            delist_symbol(fake_bybit, "linear", "ETHUSDT")
            listed_at = await wait_topic(fake_bybit, "publicTrade.NEWLISTUSDT", True)
            gone_at = await wait_topic(fake_bybit, "publicTrade.ETHUSDT", False)
            # One refresh period, plus the REST answer and the (un)subscribe's ack (the
            # reader's 5 ms coalescing wait), on the connection that had room.
            assert REFRESH <= listed_at - start <= REFRESH + 0.1
            assert REFRESH <= gone_at - start <= REFRESH + 0.1
            fake_bybit.trade("linear", "NEWLISTUSDT", count=3)
            fake_bybit.trade("linear", "BTCUSDT", count=1)
            await collector.wait_for(lambda ev: len(ev) == 16 + 4)
            # Two more listings: room for one, a new connection for the other.
            list_symbol(fake_bybit, "linear", "AAAUSDT")
            list_symbol(fake_bybit, "linear", "BBBUSDT")
            await wait_topic(fake_bybit, "publicTrade.BBBUSDT", True)
            fake_bybit.trade("linear", "AAAUSDT", count=1)
            fake_bybit.trade("linear", "BBBUSDT", count=1)
            await collector.wait_for(lambda ev: len(ev) == 22)
            nursery.cancel_scope.cancel()
    trades = collector.of(Trade)
    for symbol in [*TRADING, "NEWLISTUSDT", "AAAUSDT", "BBBUSDT"]:
        got = [t.trade_id for t in trades if t.symbol == symbol]
        assert got == [t["i"] for t in fake_bybit.history("linear", symbol)], symbol
    # Nothing reconnected: 3 connections at start, 1 opened for the last listings.
    assert fake_bybit.total_connections_opened == 4
    assert sum(c.reconnects for c in source.connections) == 0
    assert source.metrics["symbols_listed"] == 3 and source.metrics["symbols_delisted"] == 1
    # The delisting (handled first) made room on #0 for the listing; of the next two, one
    # fits on #2, the other opens #3.
    assert [c.topics for c in source.connections] == [
        ["publicTrade.BTCUSDT", "publicTrade.SOLUSDT", "publicTrade.NEWLISTUSDT"],
        ["publicTrade.XRPUSDT", "publicTrade.1000PEPEUSDT", "publicTrade.DOGEUSDT"],
        ["publicTrade.BNBUSDT", "publicTrade.ADAUSDT", "publicTrade.AAAUSDT"],
        ["publicTrade.BBBUSDT"],
    ]
    ended = [g for g in collector.gaps if g.ended]
    assert len(ended) == 1 and ended[0].channel == "linear"
    assert (ended[0].symbols, ended[0].closed) == (("ETHUSDT",), True)
    assert "ETHUSDT" not in source.symbols


async def test_a_pattern_follows_only_its_symbols(fake_bybit, collector: Collector,
                                                  autojump_clock):
    fake_bybit.add_symbol("linear", "BTCUSDC")
    source = make_source(fake_bybit, symbols="*usdc", refresh_symbols_s=REFRESH,
                         streams=["trades", "tickers"])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert source.symbols == ["BTCUSDC"]
            list_symbol(fake_bybit, "linear", "ETHUSDC")
            list_symbol(fake_bybit, "linear", "NEWUSDT")
            await wait_topic(fake_bybit, "tickers.ETHUSDC", True)
            await trio.sleep(2 * REFRESH)
            nursery.cancel_scope.cancel()
    assert source.symbols == ["BTCUSDC", "ETHUSDC"]
    assert not fake_bybit.subscribers("linear", "publicTrade.NEWUSDT")
    assert source.connections[0].topics == ["publicTrade.BTCUSDC", "tickers.BTCUSDC",
                                            "publicTrade.ETHUSDC", "tickers.ETHUSDC"]


async def test_a_failed_or_empty_reread_changes_nothing(fake_bybit, collector: Collector,
                                                        autojump_clock):
    source = make_source(fake_bybit, symbols="all", refresh_symbols_s=REFRESH)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.rest_failing.add("/v5/market/instruments-info")
            await trio.sleep(REFRESH + 1)
            fake_bybit.rest_failing.clear()
            for symbol in TRADING:
                delist_symbol(fake_bybit, "linear", symbol)
            await trio.sleep(REFRESH + 1)
            nursery.cancel_scope.cancel()
    assert source.symbols == TRADING
    assert source.metrics["rest_failures"] == 1
    assert source.metrics["symbols_delisted"] == 0


def test_symbols_all_or_a_pattern_from_toml_and_bad_values():
    config = structure_options(BybitLinearConfig, {"symbols": "all"})
    assert config.symbol_pattern() == "*" and config.refresh_symbols_s == 300
    config = structure_options(BybitLinearConfig, {"symbols": "*USDT",
                                                   "refresh_symbols_s": 0})
    assert config.symbol_pattern() == "*USDT" and config.refresh_symbols_s == 0
    assert structure_options(BybitLinearConfig, {"symbols": ["btcusdt"]}).symbol_pattern() is None
    with pytest.raises(ConfigError, match="refresh_symbols_s: expected 0 \\(off\\) or 10"):
        structure_options(BybitLinearConfig, {"symbols": "all", "refresh_symbols_s": 5})
    with pytest.raises(ConfigError, match="symbols: expected a list of strings"):
        structure_options(BybitLinearConfig, {"symbols": 5})
    with pytest.raises(ConfigError, match="set either symbols or load_all_symbols"):
        structure_options(BybitLinearConfig, {"symbols": "all", "load_all_symbols": True})
    assert StreamGap("linear", ("X",), 0).ended is False


async def test_a_new_option_gets_its_ticker_and_its_trades(fake_bybit, collector: Collector,
                                                           autojump_clock):
    old = "BTC-26DEC26-100000-C"
    new = "BTC-27MAR27-120000-P"
    fake_bybit.add_symbol("option", old)
    source = make_source(fake_bybit, "option", symbols="all", base_coins=["BTC"],
                         refresh_symbols_s=REFRESH, streams=["trades", "tickers"])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            list_symbol(fake_bybit, "option", new)
            await fake_bybit.wait_subscribed("option", [f"tickers.{new}"])
            fake_bybit.trade("option", new, count=5)
            fake_bybit.trade("option", old, count=1)
            await collector.wait_for(lambda ev: len(collector.of(Trade)) == 6)
            delist_symbol(fake_bybit, "option", old)
            while fake_bybit.subscribers("option", f"tickers.{old}"):
                await fake_bybit._sub_changed.park()
            nursery.cancel_scope.cancel()
    assert source.connections[0].topics == ["publicTrade.BTC", f"tickers.{new}"]
    assert source.connections[0].trade_symbols == (new,)
    assert [t.trade_id for t in collector.of(Trade) if t.symbol == new] == [
        t["i"] for t in fake_bybit.history("option", new)]
    assert source.metrics["symbols_listed"] == 1 and source.metrics["symbols_delisted"] == 1


async def test_a_symbol_delisted_while_it_is_being_recovered(fake_bybit, collector: Collector,
                                                            autojump_clock):
    """After a reconnect BTCUSDT's live trades are held until REST recovers the missed ones;
    REST fails, and BTCUSDT is delisted meanwhile: its held trade goes downstream before its
    stream ends, its recovery stops, nothing of it is kept, the stream gap closes."""
    source = make_source(fake_bybit, symbols="all", refresh_symbols_s=REFRESH,
                         recovery_deadline=5 * REFRESH)
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT", count=3)
            await collector.wait_for(lambda ev: len(ev) == 3)
            fake_bybit.rest_failing.add("/v5/market/recent-trade")
            fake_bybit.drop_connections()
            await fake_bybit.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            fake_bybit.trade("linear", "BTCUSDT")  # held: BTCUSDT is being recovered
            fake_bybit.trade("linear", "ETHUSDT")  # nothing to recover: flows
            await collector.wait_for(lambda ev: len(ev) == 4)
            connection = source.connections[0]
            assert connection.recovery is not None
            assert list(connection.recovery.book.held) == ["BTCUSDT"]
            delist_symbol(fake_bybit, "linear", "BTCUSDT")
            await wait_topic(fake_bybit, "publicTrade.BTCUSDT", False)
            await collector.wait_for(lambda ev: any(g.ended for g in collector.gaps))
            ended_at = trio.current_time()
            await collector.wait_for(lambda ev: collector.gaps[-1].closed
                                     and not collector.gaps[-1].ended)
            closed_at = trio.current_time()
            nursery.cancel_scope.cancel()
    assert [t.trade_id for t in collector.of(Trade) if t.symbol == "BTCUSDT"] == [
        t["i"] for t in fake_bybit.history("linear", "BTCUSDT")]
    held_trade = fake_bybit.history("linear", "BTCUSDT")[-1]["i"]
    ended = next(i for i, g in enumerate(collector.gaps) if g.ended)
    position = next(i for i, e in enumerate(collector.events)
                    if isinstance(e, Trade) and e.trade_id == held_trade)
    assert position < collector.gap_positions[ended]  # the held trade, then the end
    # The recovery gave BTCUSDT up at its next retry (every 4 s at most), not at its deadline.
    assert closed_at - ended_at <= 4.0
    recovery = connection.recovery
    assert not recovery.book.held and "BTCUSDT" not in recovery.windows
    assert source.metrics["trade_gaps"] == 0 and source.metrics["recovered_trades"] == 0
    assert sum(c.reconnects for c in source.connections) == 1


async def test_a_new_option_base_coin_is_followed_and_a_finished_one_let_go(
        fake_bybit, collector: Collector, autojump_clock):
    """Without base_coins the source reads every base coin Bybit lists at each refresh: a
    coin listed while running gets its trades topic, a coin none of whose options trades
    any more loses it; the other coins' topics stay subscribed."""
    btc, eth = "BTC-26DEC26-100000-C", "ETH-26DEC26-4000-P"
    fake_bybit.add_symbol("option", btc)
    fake_bybit.add_symbol("option", eth)
    source = make_source(fake_bybit, "option", symbols="all", refresh_symbols_s=REFRESH,
                         streams=["trades"])
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            assert source.connections[0].topics == ["publicTrade.BTC", "publicTrade.ETH"]
            start = trio.current_time()
            xrp = list_symbol(fake_bybit, "option", "XRP-26DEC26-3-C").symbol
            delist_symbol(fake_bybit, "option", eth)
            await fake_bybit.wait_subscribed("option", ["publicTrade.XRP"])
            assert REFRESH <= trio.current_time() - start <= REFRESH + 0.1
            while fake_bybit.subscribers("option", "publicTrade.ETH"):
                await fake_bybit._sub_changed.park()
            fake_bybit.trade("option", xrp, count=2)
            fake_bybit.trade("option", btc, count=1)
            await collector.wait_for(lambda ev: len(ev) == 3)
            nursery.cancel_scope.cancel()
    assert source.symbols == [btc, xrp]
    assert source.connections[0].topics == ["publicTrade.BTC", "publicTrade.XRP"]
    assert source.connections[0].trade_symbols == (btc, xrp)
    assert [t.trade_id for t in collector.of(Trade) if t.symbol == xrp] == [
        t["i"] for t in fake_bybit.history("option", xrp)]
    assert fake_bybit.total_connections_opened == 1
    assert [(g.symbols, g.ended) for g in collector.gaps] == [((eth,), True)]
