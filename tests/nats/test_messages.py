"""Subjects, message ids and payloads of the ``nats`` sink (pure functions)."""

from __future__ import annotations

import msgspec
import pytest

from streamer import Book, Kline, Price, Ticker, Trade
from streamer.wire import render
from streamer_nats.connection import token
from streamer_nats.messages import (
    DecodeError,
    decode_payload,
    msg_id_of,
    payload_of,
    subject_of,
)
from streamer_nats.sink import NatsSinkConfig

BOOK = Book("linear", "BTCUSDT", "delta", [["100.5", "0"]], [["101", "2.5"]], 42, 1_000, 7, 998)

TRADE = Trade("linear", "BTCUSDT", 1, "Buy", "91234.5", "0.01", "abc-1", "PlusTick", False,
              False, 7)


def _kline(**kw) -> Kline:
    base = dict(channel="linear", symbol="BTCUSDT", interval=60_000, timestamp=1_764_000_000_000,
                open=1.0, high=2.0, low=0.5, close=1.5, volume=3.0, trade_count=10)
    base.update(kw)
    return Kline(**base)  # type: ignore[arg-type]


def test_subjects() -> None:
    assert subject_of("bybit", TRADE) == "bybit.linear.trades.BTCUSDT"
    assert subject_of("bybit", _kline(interval=3_600_000)) == "bybit.linear.klines.1h.BTCUSDT"
    assert subject_of("x.y", Ticker("spot", "ETHUSDT", 5, {})) == "x.y.spot.ticker.ETHUSDT"
    assert subject_of("bybit", Price("spot", "ETHUSDT", 1.0, 5)) == "bybit.spot.price.ETHUSDT"
    assert subject_of("bybit", BOOK) == "bybit.linear.book.BTCUSDT"
    assert token("A.B*C>D E") == "A_B_C_D_E"  # never a wildcard or an extra token
    # Channels are the source's own names; one that is not a safe name stays one token.
    assert subject_of("p", Price("futures", "ABC-PERP", 1.0, 5)) == "p.futures.price.ABC-PERP"
    assert subject_of("p", Price("a.b>", "X", 1.0, 5)) == "p.a_b_.price.X"


def test_ids_are_deterministic_and_per_event() -> None:
    assert msg_id_of(TRADE) == "t:linear:BTCUSDT:abc-1"
    assert msg_id_of(Trade("spot", "BTCUSDT", 1, "Buy", "1", "1", "abc-1")) != msg_id_of(TRADE)
    assert msg_id_of(_kline()) == "k:linear:BTCUSDT:60000:1764000000000"
    # a closed kline's id does not depend on its values: replicas agree on it
    assert msg_id_of(_kline(close=9.0, volume=9.0, trade_count=99)) == msg_id_of(_kline())
    assert msg_id_of(Ticker("linear", "BTCUSDT", 5, {"a": 1})) == "tk:linear:BTCUSDT:5"
    assert msg_id_of(Price("linear", "BTCUSDT", 1.0, 5)) == "p:linear:BTCUSDT:5"
    assert msg_id_of(BOOK) == "b:linear:BTCUSDT:d42:1000"
    # A reset starts u over: the snapshot u = 1 and the delta u = 1 of another time differ.
    reset = Book("linear", "BTCUSDT", "snapshot", [], [], 1, 2_000)
    assert msg_id_of(reset) == "b:linear:BTCUSDT:s1:2000"


def test_a_partial_kline_never_takes_the_complete_ones_id() -> None:
    complete, partial = _kline(), _kline(partial=True, trade_count=3)
    assert msg_id_of(partial) != msg_id_of(complete)
    assert msg_id_of(partial).startswith("kp:")


def test_kline_updates_are_identified_by_their_state() -> None:
    a, b = _kline(closed=False, trade_count=4), _kline(closed=False, trade_count=5)
    assert msg_id_of(a) != msg_id_of(b) != msg_id_of(_kline())
    assert msg_id_of(a) == msg_id_of(_kline(closed=False, trade_count=4))
    bybit = _kline(closed=False, trade_count=None)
    assert msg_id_of(bybit) != msg_id_of(_kline(closed=False, trade_count=None, volume=4.0))


def test_payload_is_the_wire_envelope_of_one_event_and_decodes_back() -> None:
    for event in (TRADE, _kline(turnover=2.0), _kline(partial=True),
                  Ticker("linear", "BTCUSDT", 5, {"symbol": "BTCUSDT", "lastPrice": 1.5}),
                  Price("spot", "XRPUSDT", 2.5, 9), BOOK,
                  Book("spot", "ETHUSDT", "snapshot", [], [], 1, 5)):
        assert msgspec.json.decode(payload_of(event)) == render([event])[0]
        assert decode_payload(payload_of(event)) == [event]


@pytest.mark.parametrize("bad", [b"", b"{", b"[]", b'{"channel":"linear"}',
                                 b'{"channel":"linear","data_type":"nope","data":[]}',
                                 b'{"channel":"linear","data_type":"trades","data":[{}]}',
                                 b'{"channel":"l","data_type":"book","data":[{"symbol":"X",'
                                 b'"kind":"delta","bids":[[1,2]],"asks":[],"update_id":1,'
                                 b'"ts":1}]}',
                                 b'{"channel":"l","data_type":"book","data":[{"symbol":"X",'
                                 b'"kind":"other","bids":[],"asks":[],"update_id":1,'
                                 b'"ts":1}]}',
                                 # Channels end up in keys, subjects and folder names.
                                 b'{"channel":"../../etc","data_type":"price","data":[]}',
                                 b'{"channel":"a:b","data_type":"price","data":[]}',
                                 b'{"channel":7,"data_type":"price","data":[]}'])
def test_garbage_is_a_decode_error(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_payload(bad)


@pytest.mark.parametrize("options", [
    {"url": []}, {"url": "redis://x"}, {"url": "nats://u:p@h:4222"}, {"url": 5},
    {"subject_prefix": "a.>"}, {"subject_prefix": ""}, {"replicas": 0},
    {"duplicate_window_s": 0}, {"max_in_flight": 0}, {"max_buffer": 0}, {"stream": "A.B"},
])
def test_bad_sink_config(options) -> None:
    with pytest.raises(ValueError):
        NatsSinkConfig(**options)


def test_url_one_or_a_list() -> None:
    assert NatsSinkConfig(url="nats://h:1").servers == ["nats://h:1"]
    assert NatsSinkConfig(url=["nats://a:1", "nats://b:2"]).servers == ["nats://a:1",
                                                                         "nats://b:2"]


def test_liquidation_subject_id_and_round_trip() -> None:
    from streamer import Liquidation

    liq = Liquidation("inverse", "BTCUSD", 1_700_000_000_000, "Sell", "0.003", "94000")
    assert subject_of("bybit", liq) == "bybit.inverse.liquidations.BTCUSD"
    assert msg_id_of(liq) == "l:inverse:BTCUSD:1700000000000:Sell:0.003:94000"
    assert msgspec.json.decode(payload_of(liq)) == render([liq])[0]
    assert decode_payload(payload_of(liq)) == [liq]


def test_derivatives_and_funding_subjects_ids_and_round_trip() -> None:
    from streamer import Derivatives, Funding

    d = Derivatives("linear", "BTCUSDT", 5, 0.0001, 1_700_000_000_000, 12.5, 1e6, 94000.5,
                    94001.0)
    f = Funding("linear", "BTCUSDT", 1_700_000_000_000, -0.0002)
    assert subject_of("bybit", d) == "bybit.linear.derivatives.BTCUSDT"
    assert subject_of("bybit", f) == "bybit.linear.funding.BTCUSDT"
    assert (msg_id_of(d), msg_id_of(f)) == ("d:linear:BTCUSDT:5",
                                            "f:linear:BTCUSDT:1700000000000")
    assert decode_payload(payload_of(d)) == [d]
    assert decode_payload(payload_of(f)) == [f]
