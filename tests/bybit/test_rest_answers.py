"""A malformed REST answer is a failed request: counted, retried or reported as a REST error
is, never an exception out of the source (before, a body nested deep made the JSON decoder
raise RecursionError and a list of non-objects made the row code raise AttributeError; either
left the source, whose gap recovery then lost the missed trades unreported).

The fake answers a path with raw bodies (``rest_bodies``); MockClock.
"""

from __future__ import annotations

import logging

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._events import Trade
from streamer_bybit.simulator import FakeBybit

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]
RECENT = "/v5/market/recent-trade"
INSTRUMENTS = "/v5/market/instruments-info"
DEPTH = 50_000


def envelope(result: str) -> bytes:
    return ('{"retCode":0,"retMsg":"OK","result":' + result + ',"retExtInfo":{},"time":1}'
            ).encode()


#: msgspec raises RecursionError on it (HttpError: a failed request).
DEEP = envelope('{"list":' + "[" * DEPTH + "]" * DEPTH + "}")
#: A list of rows that are not objects (the REST layer refuses it: a failed request).
NOT_OBJECTS = envelope('{"list":[1,"x",null],"nextPageCursor":""}')
#: An answer where the list is an object.
LIST_IS_OBJECT = envelope('{"list":{"symbol":"BTCUSDT"}}')


def row(price: str = "100", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"execId": "x-1", "symbol": "BTCUSDT", "price": price,
                               "size": "1", "side": "Buy", "time": "1"}
    base.update(fields)
    return base


def rows(*items: dict[str, object]) -> bytes:
    import json

    return envelope(json.dumps({"category": "linear", "list": list(items)}))


def ids(collector: Collector, symbol: str) -> list[str]:
    return [e.trade_id for e in collector.of(Trade) if e.symbol == symbol]


def history(fake: FakeBybit, symbol: str) -> list[str]:
    return [t["i"] for t in fake.history("linear", symbol)]


def trade_round(fake: FakeBybit) -> None:
    for symbol in SYMBOLS:
        fake.trade("linear", symbol, count=2)


async def test_malformed_recent_trade_answers_are_retried_and_recovery_completes(
    collector, autojump_clock, caplog
):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=8)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS)
            await run_source(nursery, source, collector)
            for _ in range(3):
                trade_round(fake)
                await trio.sleep(0.2)
            await collector.wait_for(lambda ev: all(len(ids(collector, s)) == 6
                                                    for s in SYMBOLS))
            # the next four recent-trade answers are bad, whichever symbol asks
            fake.rest_bodies[RECENT] = [DEEP, NOT_OBJECTS, rows(row(price="cheap")),
                                        rows(row(time=["1"]))]
            fake.drop_connections()
            trade_round(fake)  # made while the source reconnects: only REST has them
            await fake.wait_subscribed("linear", TOPICS)
            for _ in range(5):
                trade_round(fake)
                await trio.sleep(0.2)
            await collector.wait_for(lambda ev: all(
                len(ids(collector, s)) >= len(history(fake, s)) for s in SYMBOLS))
            await trio.sleep(1)  # nothing more (a duplicate) may follow
            nursery.cancel_scope.cancel()
    assert fake.rest_bodies[RECENT] == []  # every bad answer was served
    for s in SYMBOLS:
        assert ids(collector, s) == history(fake, s)  # 18 each: once, in order
        assert len(history(fake, s)) == 18
    m = source.metrics
    assert m["recovered_trades"] == 4  # the round made while reconnecting
    assert m["trade_gaps"] == 0
    assert m["rest_failures"] == 2  # DEEP, NOT_OBJECTS: refused by the REST layer
    assert m["malformed"] == 2  # the rows that are no trade
    assert [(g.closed, g.complete) for g in collector.gaps] == [(False, True), (True, True)]
    lines = [r.getMessage() for r in caplog.records if "bad REST recent-trade" in r.getMessage()]
    assert len(lines) == 1  # rate-limited: one line for both, whichever came first
    assert ("ValueError: trade 'x-1': price 'cheap' or size '1' is not a positive number"
            in lines[0]) or ("ValueError: a recent-trade row without symbol, side, price, "
                             "size, execId and time as strings" in lines[0])


async def test_malformed_instrument_lists_are_retried_until_a_good_one(
    fake_bybit, collector, autojump_clock, caplog
):
    caplog.set_level(logging.WARNING)
    fake_bybit.rest_bodies[INSTRUMENTS] = [DEEP, NOT_OBJECTS, LIST_IS_OBJECT,
                                           envelope('{"list":[{"symbol":["BTCUSDT"]}]}'),
                                           b'{"retCode":[0],"result":{}}']
    source = make_source(fake_bybit, load_all_symbols=True, symbols_limit=2)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            nursery.cancel_scope.cancel()
    assert source.symbols == ["BTCUSDT", "ETHUSDT"]
    assert source.metrics["rest_failures"] == 5  # each bad answer, then a good one
    assert "invalid JSON (RecursionError" in caplog.text
    assert "bad answer: a row is a JSON number" in caplog.text
    assert "bad answer: result.list is a JSON object" in caplog.text
    assert "bad answer: an instrument without a symbol" in caplog.text
    assert "retCode is a JSON array" in caplog.text


@pytest.mark.parametrize("body", [DEEP, NOT_OBJECTS, LIST_IS_OBJECT],
                         ids=["deep", "not-objects", "list-is-object"])
async def test_a_malformed_instrument_list_leaves_the_symbols_unchecked(
    fake_bybit, collector, caplog, body
):
    caplog.set_level(logging.WARNING)
    fake_bybit.rest_bodies[INSTRUMENTS] = [body]
    source = make_source(fake_bybit, symbols=["BTCUSDT"])
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await run_source(nursery, source, collector)
            fake_bybit.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            nursery.cancel_scope.cancel()
    assert source.metrics["rest_failures"] == 1
    assert "streaming BTCUSDT unchecked" in caplog.text
