"""The decoder's one-pass trade path gives what the general path gives, and sends everything
it cannot decode to the general path, which counts it (behaviour 10)."""

from __future__ import annotations

import logging

import pytest

from streamer._events import Event, Price, Trade
from streamer._logs import RateLimitedLog
from streamer._metrics import Metrics
from streamer_bybit.decode import TRADE_PREFIX, MessageDecoder
from streamer_bybit.tickers import PriceTracker, TickerBook

ITEMS = (
    '[{"T":1700000000001,"s":"BTCUSDT","S":"Buy","v":"0.5","p":"65000.1","L":"PlusTick",'
    '"i":"id-1","BT":false,"RPI":false,"seq":7},'
    '{"T":1700000000002,"s":"BTCUSDT","S":"Sell","v":"1","p":"65000","i":"id-2"}]'
)


def make_decoder(metrics: Metrics, seen: list[tuple[str, list[Trade]]]) -> MessageDecoder:
    prices = PriceTracker("linear")
    return MessageDecoder(
        "linear",
        metrics,
        RateLimitedLog(logging.getLogger("test.decode")),
        TickerBook("linear", prices, emit_tickers=True, price_field=None),
        prices,
        price_from_trades=True,
        on_trades=lambda symbol, trades: seen.append((symbol, trades)),
    )


def decode(payload: bytes) -> tuple[list[Event], Metrics, list[tuple[str, list[Trade]]]]:
    metrics = Metrics()
    seen: list[tuple[str, list[Trade]]] = []
    out: list[Event] = []
    assert make_decoder(metrics, seen).decode(payload, out) is None
    return out, metrics, seen


def test_fast_and_general_path_agree():
    fast = f'{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":5,"data":{ITEMS}}}'.encode()
    general = f'{{"type":"snapshot","topic":"publicTrade.BTCUSDT","data":{ITEMS},"ts":5}}'
    assert fast.startswith(TRADE_PREFIX) and not general.startswith('{"topic"')
    got_fast, m_fast, seen_fast = decode(fast)
    got_general, m_general, seen_general = decode(general.encode())
    assert got_fast == got_general
    assert [type(e) for e in got_fast] == [Trade, Trade, Price]
    assert got_fast[0] == Trade(
        "linear", "BTCUSDT", 1700000000001, "Buy", "65000.1", "0.5", "id-1",
        "PlusTick", False, False, 7,
    )
    assert seen_fast == seen_general == [("BTCUSDT", got_fast[:2])]
    assert m_fast.snapshot() == m_general.snapshot() == {}


def test_empty_trade_list_gives_nothing():
    out, metrics, seen = decode(b'{"topic":"publicTrade.BTCUSDT","ts":1,"data":[]}')
    assert (out, metrics.snapshot(), seen) == ([], {}, [])


@pytest.mark.parametrize(
    "payload",
    [
        b'{"topic":"publicTrade.BTCUSDT","data":[{"s":"\xff\xfe"}]}',  # bad UTF-8 in data
        b'{"topic":"publicTrade.BTCUSDT","data":[{"T":"soon","s":"B","S":"Buy","v":"1",'
        b'"p":"2","i":"x"}]}',
        b'{"topic":"publicTrade.BTCUSDT","ts":"late","data":[]}',  # bad envelope field
        b'{"topic":"publicTrade.BTCUSDT","ts":1}',  # no data
        b'{"topic":"publicTrade.BTCUSDT","data":null}',
        b'{"topic":"publicTrade.BTCUSDT","data":[{"T":17',  # truncated
        b'{"topic":"\xff","op":"subscribe"}',  # bad UTF-8 in the envelope
    ],
)
def test_malformed_counted_once(payload):
    out, metrics, seen = decode(payload)
    assert (out, metrics.snapshot(), seen) == ([], {"malformed": 1}, [])
