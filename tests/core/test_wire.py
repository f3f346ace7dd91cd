"""The wire format consumers of the older Bybit streamer depend on."""

from __future__ import annotations

import json

import msgspec
import pytest
import trio

from streamer import Book, Inbox, Kline, Price, Ticker, Trade
from streamer.wire import encode, render, render_bytes, render_encoded


def test_kline_fields_and_grouping() -> None:
    k = Kline("linear", "BTCUSDT", 60_000, 1_700_000_040_000, 1.0, 2.0, 0.5, 1.5, 10.0, 3)
    t = Trade("spot", "ETHUSDT", 1_700_000_000_123, "Sell", "2000.10", "0.5", "2240000000041",
              seq=7)
    k2 = Kline("linear", "ETHUSDT", 300_000, 1_700_000_000_000, 1, 1, 1, 1, 0, 0, closed=False)
    envelopes = render([k, t, k2])
    assert envelopes == [
        {"channel": "linear", "data_type": "klines", "data": [
            {"symbol": "BTCUSDT", "interval": 60000, "timestamp": 1700000040000, "open": 1.0,
             "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0, "trade_count": 3,
             "closed": True},
            {"symbol": "ETHUSDT", "interval": 300000, "timestamp": 1700000000000, "open": 1,
             "high": 1, "low": 1, "close": 1, "volume": 0, "trade_count": 0, "closed": False},
        ]},
        {"channel": "spot", "data_type": "trades", "data": [
            {"T": 1700000000123, "s": "ETHUSDT", "S": "Sell", "v": "0.5", "p": "2000.10",
             "i": "2240000000041", "seq": 7},
        ]},
    ]
    assert [json.loads(b) for b in render_bytes([k, t, k2])] == envelopes


def test_trade_keeps_bybit_names_and_optional_fields() -> None:
    t = Trade("linear", "BTCUSDT", 1, "Buy", "16578.50", "0.001", "20f43950-d8dd",
              tick_direction="PlusTick", block_trade=False, rpi=False, seq=1783284617)
    assert t.to_wire() == {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50",
                           "L": "PlusTick", "i": "20f43950-d8dd", "BT": False, "RPI": False,
                           "seq": 1783284617}


def test_render_encoded_is_encode_of_render_byte_for_byte() -> None:
    trades = [
        Trade(channel, symbol, 1_700_000_000_000 + i, side, price, "0.5", trade_id, *optional)
        for i, (channel, symbol, side, price, trade_id, optional) in enumerate([
            ("linear", "BTCUSDT", "Buy", "65000.5", "1", ("PlusTick", False, True, 3)),
            ("spot", "ETHUSDT", "Sell", "2000.10", "", ()),
            ("spot", "Ü\"sym", "Sell", "1e-8", "x", (None, True, None, None)),
        ])
    ]
    klines = [
        Kline("linear", "BTCUSDT", 60_000, 1_700_000_040_000, 1.0, 2.0, 0.5, 1.5, 10.0, 3),
        Kline("linear", "ETHUSDT", 300_000, 1_700_000_000_000, 1, 1, 1, 1, 0, 0, closed=False),
        Kline("spot", "X", 1_000, 0, 0.1 + 0.2, 1e16, 1e-7, 2.5, 123456.789, None,
              closed=False, turnover=0.0, partial=True),
        Kline("spot", "X", 1_000, 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, turnover=12.5),
    ]
    others = [Price("spot", "X", 1.5, 7),
              Ticker("linear", "BTCUSDT", 9, {"symbol": "BTCUSDT", "markPrice": 1.0}),
              Book("linear", "BTCUSDT", "delta", [["1.5", "0"]], [], 3, 9, 4, 8)]
    batch = [klines[0], trades[0], *others, trades[1], klines[1], klines[2], trades[2],
             klines[3]]
    assert render_encoded(batch) == [
        (env["channel"], env["data_type"], encode(env)) for env in render(batch)
    ]
    assert render_encoded([]) == []


def test_ticker_and_price() -> None:
    ticker = Ticker("linear", "BTCUSDT", 5, {"symbol": "BTCUSDT", "lastPrice": 1.5,
                                              "bid1Price": ""})
    price = Price("spot", "BTCUSDT", 1.5, 6)
    (env_t, env_p) = render([ticker, price])
    assert env_t == {"channel": "linear", "data_type": "ticker",
                     "data": [{"symbol": "BTCUSDT", "lastPrice": 1.5, "bid1Price": "", "ts": 5}]}
    assert env_p == {"channel": "spot", "data_type": "price",
                     "data": [{"symbol": "BTCUSDT", "price": 1.5, "timestamp": 6}]}


def test_book_keeps_the_level_strings_and_leaves_unknown_ids_out() -> None:
    full = Book("linear", "BTCUSDT", "snapshot", [["65000.10", "0.500"], ["64999.9", "1"]],
                [["65000.2", "3.000"]], 18_521_288, 1_700_000_000_005, 7_961_638_724,
                1_700_000_000_003)
    bare = Book("futures", "ABC-PERP", "delta", [], [["10", "0"]], 2, 6)
    assert render([full, bare]) == [
        {"channel": "linear", "data_type": "book", "data": [
            {"symbol": "BTCUSDT", "kind": "snapshot",
             "bids": [["65000.10", "0.500"], ["64999.9", "1"]], "asks": [["65000.2", "3.000"]],
             "update_id": 18_521_288, "ts": 1_700_000_000_005, "seq": 7_961_638_724,
             "engine_ts": 1_700_000_000_003}]},
        {"channel": "futures", "data_type": "book", "data": [
            {"symbol": "ABC-PERP", "kind": "delta", "bids": [], "asks": [["10", "0"]],
             "update_id": 2, "ts": 6}]},
    ]


def test_events_are_immutable() -> None:
    t = Trade("linear", "BTCUSDT", 1, "Buy", "1", "1", "a")
    with pytest.raises(AttributeError):
        t.price = "2"  # type: ignore[misc]
    assert msgspec.structs.replace(t, price="2").price == "2"


async def test_inbox_drains_everything_and_closes() -> None:
    inbox = Inbox("x", maxsize=10)
    a = Trade("linear", "A", 1, "Buy", "1", "1", "1")
    b = Trade("linear", "A", 2, "Buy", "1", "1", "2")
    await inbox.put([a])
    await inbox.put([b, a])
    assert await inbox.get() == [a, b, a]
    inbox.close()
    assert await inbox.get() == []
    await inbox.put([a])  # after close: discarded, never blocks
    assert len(inbox) == 0


async def test_inbox_drop_oldest_counts() -> None:
    inbox = Inbox("x", maxsize=2, overflow="drop_oldest")
    batches = [[Trade("linear", "A", i, "Buy", "1", "1", str(i))] for i in range(5)]
    for batch in batches:
        await inbox.put(batch)
    assert (inbox.dropped_batches, inbox.dropped_events) == (3, 3)
    assert [e.ts for e in await inbox.get()] == [3, 4]


async def test_inbox_block_waits_for_room() -> None:
    inbox = Inbox("x", maxsize=1, overflow="block")
    t = Trade("linear", "A", 1, "Buy", "1", "1", "1")
    await inbox.put([t])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inbox.put, [t])
        await trio.testing.wait_all_tasks_blocked()
        assert len(inbox) == 1  # the second put is waiting
        assert await inbox.get() == [t]
        await trio.testing.wait_all_tasks_blocked()
        assert len(inbox) == 1
    assert inbox.dropped_batches == 0


def test_hook_reference_doc_matches_the_specs() -> None:
    from pathlib import Path

    from streamer._hookdoc import render

    doc = Path(__file__).resolve().parents[2] / "docs" / "plugin_hooks.md"
    hint = "regenerate: python -m streamer._hookdoc > docs/plugin_hooks.md"
    assert doc.read_text() == render(), hint


def test_rate_limited_log_counts_what_it_suppressed(caplog) -> None:
    import logging

    from streamer._logs import RateLimitedLog

    now = [0.0]
    log = RateLimitedLog(logging.getLogger("t.rate"), interval=3600, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t.rate"):
        for i in range(100):
            log.warning("malformed", "bad message %d", i)
        log.warning("other", "another kind")
        now[0] = 3599.9
        log.warning("malformed", "still inside the window")
        now[0] = 3600.0  # the window has passed
        log.warning("malformed", "bad message %d", 100)
    assert [r.getMessage() for r in caplog.records] == [
        "bad message 0", "another kind", "bad message 100 (100 similar messages suppressed)"]
