"""The postgres sink against a real PostgreSQL: what it stores, once, and what it refuses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import trio
from pg_helpers import T0, kline, make_sink, running, trade, trade_ids, wait_until

from streamer import FatalError, Ticker


async def test_trades_klines_tickers_stored_with_exact_values(postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema,
                     data_types=["trades", "klines", "ticker"])
    events = [
        trade(1), trade(2),
        kline("BTCUSDT", T0, closed=False),  # an open candle: not stored
        kline("BTCUSDT", T0, close=1.25),
        Ticker(channel="linear", symbol="BTCUSDT", ts=T0 + 5,
               fields={"symbol": "BTCUSDT", "lastPrice": 65000.5, "fundingRate": ""}),
    ]
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await inbox.put(events)
            await wait_until(lambda: sink.writer.written_rows >= 4)
    with postgres_server.connect() as conn:
        rows = conn.execute(
            f"SELECT exchange, channel, symbol, trade_id, ts, side, price, size, tick_direction,"
            f" seq FROM {postgres_schema}.trades ORDER BY trade_id").fetchall()
        assert rows == [
            ("bybit", "linear", "BTCUSDT", "t1", dt.datetime(2023, 11, 14, 22, 14, 0, 1000,
                                                             tzinfo=dt.timezone.utc),
             "Buy", Decimal("101.5"), Decimal("0.001"), None, None),
            ("bybit", "linear", "BTCUSDT", "t2", dt.datetime(2023, 11, 14, 22, 14, 0, 2000,
                                                             tzinfo=dt.timezone.utc),
             "Sell", Decimal("102.5"), Decimal("0.001"), None, None),
        ]
        klines = conn.execute(
            f"SELECT symbol, interval_ms, open_time, close, trade_count, partial "
            f"FROM {postgres_schema}.klines").fetchall()
        assert klines == [("BTCUSDT", 60_000, dt.datetime(2023, 11, 14, 22, 14,
                                                          tzinfo=dt.timezone.utc),
                           Decimal("1.25"), 3, False)]
        tickers = conn.execute(f"SELECT symbol, fields FROM {postgres_schema}.tickers").fetchall()
        assert tickers == [("BTCUSDT", {"symbol": "BTCUSDT", "lastPrice": 65000.5,
                                        "fundingRate": ""})]
    assert sink.context.metrics["written_rows"] == 4
    assert sink.context.metrics["duplicate_rows"] == 0
