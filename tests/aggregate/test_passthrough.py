"""klines.passthrough: closed candles once each; "all" drops updates of closed candles."""

from __future__ import annotations

import logging

import msgspec

from streamer._api import Context
from streamer._config import structure_options
from streamer._events import Kline, Trade
from streamer._metrics import Metrics
from streamer_aggregate.config import PassthroughConfig
from streamer_aggregate.passthrough import KlinePassthrough

M = 60_000


def k(ts: int, closed: bool, close: float = 1.0, interval: int = M, symbol="BTCUSDT") -> Kline:
    return Kline("linear", symbol, interval, ts, 1.0, 2.0, 0.5, close, 3.0, None, closed)


def make(**options) -> KlinePassthrough:
    ctx = Context(name="p", type="klines.passthrough", logger=logging.getLogger("t.pt"),
                  metrics=Metrics())
    return KlinePassthrough(structure_options(PassthroughConfig, options), ctx)


def test_closed_only_each_once_even_if_bybit_repeats_the_confirm():
    p = make()
    trade = Trade("linear", "BTCUSDT", 1, "Buy", "1", "1", "x")
    out = p.process([k(0, False), trade, k(0, True, 2.0), k(0, True, 2.0)])
    assert out == [k(0, True, 2.0)]
    assert p.process([k(0, True, 2.0), k(M, False)]) == []
    assert p.process([k(M, True), k(0, True, 5.0, symbol="ETHUSDT")]) == [
        k(M, True), k(0, True, 5.0, symbol="ETHUSDT")]
    assert p.context.metrics["duplicate_klines"] == 2


def test_all_updates_but_nothing_after_the_close():
    p = make(updates="all")
    out = p.process([k(0, False), k(0, False, 1.5), k(0, True, 2.0), k(0, False, 9.0),
                     k(0, True, 2.0), k(M, False)])
    assert out == [k(0, False), k(0, False, 1.5), k(0, True, 2.0), k(M, False)]


def test_interval_filter():
    p = make(intervals=["5m"])
    assert p.process([k(0, True), k(0, True, interval=5 * M)]) == [k(0, True, interval=5 * M)]


def test_bybit_volume_and_turnover_reach_the_wire_as_bybit_wrote_them():
    from bybit.test_decode import make_decoder

    from streamer.wire import render

    message = (b'{"topic":"kline.5.BTCUSDT","type":"snapshot","ts":6,"data":[{"start":'
               b'1672324800000,"end":1672325099999,"interval":"5","open":"16649.5","close":'
               b'"16677","high":"16677","low":"16608","volume":"2.081","turnover":"34666.4005",'
               b'"confirm":true,"timestamp":6}]}')
    events: list = []
    make_decoder(Metrics()).decode_read([message], events)
    [kline] = make().process(events)
    wire = msgspec.json.encode(render([kline])).decode()
    assert '"volume":2.081,' in wire and '"turnover":34666.4005' in wire
