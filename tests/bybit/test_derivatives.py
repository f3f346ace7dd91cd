"""streams = ["derivatives"] (linear, inverse) against the simulator: one Derivatives event
per change of funding rate, next funding time, open interest (value), mark or index price,
from the merged tickers; a Funding event when the funding time passes, with the rate that
applied; nothing doubled by a reconnect's snapshot; a settlement missed while away comes out."""

from __future__ import annotations

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer import Derivatives, Funding, Ticker
from streamer.wire import render
from streamer_bybit.config import BybitSpotConfig

T1 = 1_700_000_000_000
T2 = T1 + 8 * 3_600_000
T3 = T2 + 8 * 3_600_000


def state(fake, category: str, symbol: str) -> tuple:
    t = fake.ticker(category, symbol)
    return (float(t["fundingRate"]), int(t["nextFundingTime"]) or None,
            float(t["openInterest"]), float(t["openInterestValue"]), float(t["markPrice"]),
            float(t["indexPrice"]))


def of(event: Derivatives) -> tuple:
    return (event.funding_rate, event.next_funding_time, event.open_interest,
            event.open_interest_value, event.mark_price, event.index_price)


async def wait_sessions(source, n: int) -> None:
    while min(c.sessions for c in source.connections) < n:
        await trio.sleep(0.01)


@pytest.mark.parametrize(("category", "symbol"), [("linear", "BTCUSDT"), ("inverse", "BTCUSD")])
async def test_one_event_per_change_and_funding_at_each_funding_time(
        fake_bybit, collector: Collector, autojump_clock, category, symbol):
    if category == "inverse":
        fake_bybit.add_symbol("inverse", symbol)
    fake_bybit.set_ticker(category, symbol, nextFundingTime=T1, fundingRate="0.0001")
    source = make_source(fake_bybit, category, symbols=[symbol], streams=["derivatives"])
    want: list = []
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            await collector.wait_for(lambda ev: len(ev) == 1)
            want.append(("d", state(fake_bybit, category, symbol)))
            fake_bybit.set_ticker(category, symbol, lastPrice="1", volume24h="5")  # no change
            fake_bybit.set_ticker(category, symbol, fundingRate="0.0002")
            want.append(("d", state(fake_bybit, category, symbol)))
            fake_bybit.set_ticker(category, symbol, openInterest="1234.5", markPrice="99.5")
            want.append(("d", state(fake_bybit, category, symbol)))
            # The funding time passes: settled at T1 with the rate seen last (0.0002).
            fake_bybit.set_ticker(category, symbol, nextFundingTime=T2, fundingRate="0.0003")
            want.append(("f", (T1, 0.0002)))
            want.append(("d", state(fake_bybit, category, symbol)))
            await collector.wait_for(lambda ev: len(ev) == len(want))
            # A reconnect: the snapshot that follows changes nothing, so it emits nothing.
            fake_bybit.drop_connections(category)
            await wait_sessions(source, 2)
            fake_bybit.set_ticker(category, symbol, indexPrice="98.25")
            want.append(("d", state(fake_bybit, category, symbol)))
            await collector.wait_for(lambda ev: len(ev) == len(want))
            # Away while T2 passes: the snapshot after the resubscribe tells of it.
            fake_bybit.pause_topic(category, f"tickers.{symbol}")
            fake_bybit.set_ticker(category, symbol, nextFundingTime=T3, fundingRate="-0.0001")
            fake_bybit.drop_connections(category)
            fake_bybit.resume_topic(category, f"tickers.{symbol}")
            await wait_sessions(source, 3)
            want.append(("f", (T2, 0.0003)))
            want.append(("d", state(fake_bybit, category, symbol)))
            await collector.wait_for(lambda ev: len(ev) == len(want))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    got = [("d", of(e)) if isinstance(e, Derivatives) else ("f", (e.funding_time, e.funding_rate))
           for e in collector.events]
    assert got == want
    assert not collector.of(Ticker)  # "tickers" not asked for: only the derived events
    assert all(e.channel == category and e.symbol == symbol for e in collector.events)
    funding = collector.of(Funding)[0]
    assert render([funding]) == [{"channel": category, "data_type": "funding", "data": [
        {"symbol": symbol, "fundingTime": T1, "fundingRate": 0.0002}]}]
    wire = render(collector.of(Derivatives)[:1])[0]["data"][0]
    assert list(wire) == ["symbol", "ts", "fundingRate", "nextFundingTime", "openInterest",
                          "openInterestValue", "markPrice", "indexPrice"]


def test_derivatives_only_on_linear_and_inverse():
    with pytest.raises(ValueError, match='"derivatives" is for linear and inverse only'):
        BybitSpotConfig(load_all_symbols=True, streams=["derivatives"])
