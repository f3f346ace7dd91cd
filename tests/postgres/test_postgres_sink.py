"""The postgres sink against a real PostgreSQL: what it stores, once, and what it refuses."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import trio
from pg_helpers import T0, kline, make_sink, running, trade, trade_ids, wait_until

from streamer import FatalError, Ticker


def _fatal(match: str) -> pytest.RaisesGroup[FatalError]:
    return pytest.RaisesGroup(pytest.RaisesExc(FatalError, match=match),
                              allow_unwrapped=True, flatten_subgroups=True)


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


async def test_two_replicas_writing_the_same_trades_store_each_once(postgres_server,
                                                                    postgres_schema):
    a = make_sink(postgres_server, postgres_schema, name="a")
    b = make_sink(postgres_server, postgres_schema, name="b")
    trades = [trade(i) for i in range(3000)]
    with trio.fail_after(60):
        async with running(a) as inbox_a, running(b) as inbox_b:
            for start in range(0, 3000, 100):
                await inbox_a.put(trades[start:start + 100])
                await inbox_b.put(trades[start:start + 100])
            await wait_until(lambda: a.writer.written_rows == b.writer.written_rows == 3000)
    assert sorted(trade_ids(postgres_server, postgres_schema)) == sorted(f"t{i}"
                                                                         for i in range(3000))
    # Each row went in through one replica and was skipped by the other.
    assert a.writer.duplicate_rows + b.writer.duplicate_rows == 3000
    assert a.context.metrics["written_rows"] == b.context.metrics["written_rows"] == 3000


async def test_a_retried_batch_stores_nothing_twice_and_a_full_candle_replaces_a_partial(
        postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema)
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await inbox.put([trade(1), trade(2), kline("ETHUSDT", T0, close=1.0, partial=True)])
            await wait_until(lambda: sink.writer.written_rows == 3)
            await inbox.put([trade(2), trade(3), kline("ETHUSDT", T0, close=2.0),
                             kline("ETHUSDT", T0, close=3.0)])
            await wait_until(lambda: sink.writer.written_rows == 7)
    assert sorted(trade_ids(postgres_server, postgres_schema)) == ["t1", "t2", "t3"]
    with postgres_server.connect() as conn:
        assert conn.execute(f"SELECT close, partial FROM {postgres_schema}.klines").fetchall() \
            == [(Decimal("2.0"), False)]  # the first full one wins, a later one changes nothing
    assert sink.writer.duplicate_rows == 2


async def test_wrong_password_is_fatal(postgres_server, postgres_schema, monkeypatch):
    monkeypatch.setenv("STREAMER_TEST_PG_PASSWORD", "not-the-password")
    sink = make_sink(postgres_server, postgres_schema)
    refused = r"password authentication failed.*\$STREAMER_TEST_PG_PASSWORD"
    with trio.fail_after(30), _fatal(refused):
        async with running(sink):
            pass


async def test_without_migrations_the_missing_tables_are_fatal_and_say_what_to_run(
        postgres_server, postgres_schema):
    sink = make_sink(postgres_server, postgres_schema, migrate=False)
    with trio.fail_after(30), _fatal(r"UndefinedTable.*streamer db migrate"):
        async with running(sink) as inbox:
            await inbox.put([trade(1)])
            await trio.sleep_forever()
    assert sink.context.metrics["lost_on_fatal"] == 1
