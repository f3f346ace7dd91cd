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


def make_decoder(metrics: Metrics) -> MessageDecoder:
    prices = PriceTracker("linear")
    return MessageDecoder(
        "linear",
        metrics,
        RateLimitedLog(logging.getLogger("test.decode")),
        TickerBook("linear", prices, emit_tickers=True, price_field=None),
        prices,
        price_from_trades=True,
    )


def decode(payload: bytes) -> tuple[list[Event], Metrics]:
    metrics = Metrics()
    out: list[Event] = []
    assert make_decoder(metrics).decode(payload, out) is None
    return out, metrics


def test_fast_and_general_path_agree():
    fast = f'{{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":5,"data":{ITEMS}}}'.encode()
    general = f'{{"type":"snapshot","topic":"publicTrade.BTCUSDT","data":{ITEMS},"ts":5}}'
    assert fast.startswith(TRADE_PREFIX) and not general.startswith('{"topic"')
    got_fast, m_fast = decode(fast)
    got_general, m_general = decode(general.encode())
    assert got_fast == got_general
    assert [type(e) for e in got_fast] == [Trade, Trade, Price]
    assert got_fast[0] == Trade(
        "linear", "BTCUSDT", 1700000000001, "Buy", "65000.1", "0.5", "id-1",
        "PlusTick", False, False, 7,
    )
    assert m_fast.snapshot() == m_general.snapshot() == {}


def test_empty_trade_list_gives_nothing():
    out, metrics = decode(b'{"topic":"publicTrade.BTCUSDT","ts":1,"data":[]}')
    assert (out, metrics.snapshot()) == ([], {})


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
    out, metrics = decode(payload)
    assert (out, metrics.snapshot()) == ([], {"malformed": 1})


def test_one_read_decodes_in_order():
    """The reader hands a whole read to ``decode_read``: events come out in message order
    whichever path decoded them, op replies come back, bad messages are counted."""
    metrics = Metrics()
    decoder = make_decoder(metrics)
    decoder.price_from_trades = False
    one = (b'{"topic":"publicTrade.ETHUSDT","type":"snapshot","ts":5,"data":[{"T":1700000000003,'
           b'"s":"ETHUSDT","S":"Buy","v":"2","p":"3000","i":"id-3"}]}')
    general = f'{{"type":"snapshot","topic":"publicTrade.BTCUSDT","data":{ITEMS},"ts":5}}'
    kline = (b'{"topic":"kline.1.BTCUSDT","type":"snapshot","ts":6,"data":[{"start":1700000000000,'
             b'"end":1700000059999,"interval":"1","open":"1","close":"2","high":"3","low":"0.5",'
             b'"volume":"10","turnover":"20","confirm":false,"timestamp":6}]}')
    ack = b'{"success":true,"ret_msg":"","conn_id":"c","req_id":"7","op":"subscribe"}'
    read = [one, b"not json", general.encode(), ack, kline, one]
    out: list[Event] = []
    replies = decoder.decode_read(read, out)
    assert [r.req_id for r in replies] == ["7"]
    assert [(type(e).__name__, e.symbol) for e in out] == [
        ("Trade", "ETHUSDT"), ("Trade", "BTCUSDT"), ("Trade", "BTCUSDT"),
        ("Kline", "BTCUSDT"), ("Trade", "ETHUSDT"),
    ]
    assert [t.trade_id for t in out if isinstance(t, Trade)] == ["id-3", "id-1", "id-2", "id-3"]
    assert decoder.trades == 4
    assert metrics.snapshot() == {"malformed": 1}
