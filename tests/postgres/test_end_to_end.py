"""The fake Bybit into a postgres sink through `streamer run`'s pipeline: every trade the fake
sent is stored once (its ids compared with the fake's own log), and the closed klines."""

from __future__ import annotations

import trio
from pipelines import bybit_source, klines_partial
from postgres_server import PASSWORD_ENV

from streamer import clock
from streamer.testing import running_pipeline

M = 60_000

SINK = """
[[sinks]]
name = "history"
type = "postgres"
inputs = ["bybit", "klines"]
dsn = "{dsn}"
password_env = "{password_env}"
schema = "{schema}"
"""

async def test_every_trade_of_the_fake_stored_once(fake_bybit, plugin_manager, postgres_server,
                                                   postgres_schema):
    fake = fake_bybit
    toml = (bybit_source(fake, ["BTCUSDT", "ETHUSDT"]) + klines_partial()
            + SINK.format(dsn=postgres_server.dsn, password_env=PASSWORD_ENV,
                          schema=postgres_schema))
    m0 = clock.now_ms() // M * M - 10 * M  # minutes that are over: klines close at once
    symbols = ("BTCUSDT", "ETHUSDT")

    def stored() -> int:
        with postgres_server.connect() as conn:
            return conn.execute(f"SELECT count(*) FROM {postgres_schema}.trades").fetchone()[0]

    def closed_klines() -> int:
        """Candles of the minutes m0 .. m0+2, closed by the trades of the next minute."""
        with postgres_server.connect() as conn:
            return conn.execute(
                f"SELECT count(*) FROM {postgres_schema}.klines WHERE open_time < "
                "timestamptz 'epoch' + %s * interval '1 millisecond'", (m0 + 3 * M,)
            ).fetchone()[0]

    with trio.fail_after(60):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            await fake.wait_subscribed("linear", [f"publicTrade.{s}" for s in symbols])
            for symbol in symbols:
                for offset in range(0, 5 * M, 2_000):
                    fake.trade("linear", symbol, ts=m0 + offset, count=3)
            sent = sum(len(fake.history("linear", s)) for s in symbols)
            sink = pipeline.node("history")
            while stored() < sent or closed_klines() < 6:
                await trio.sleep(0.05)
            await sink.writer.wait_written(sent)
        metrics = pipeline.metrics()["history"]
    with postgres_server.connect() as conn:
        for symbol in symbols:
            ids = [r[0] for r in conn.execute(
                f"SELECT trade_id FROM {postgres_schema}.trades WHERE symbol = %s",
                (symbol,))]
            assert sorted(ids) == sorted(t["i"] for t in fake.history("linear", symbol))
        klines = conn.execute(
            f"SELECT symbol, (extract(epoch FROM open_time) * 1000)::bigint, trade_count "
            f"FROM {postgres_schema}.klines WHERE open_time < timestamptz 'epoch' + "
            "%s * interval '1 millisecond' ORDER BY symbol, open_time", (m0 + 3 * M,)
        ).fetchall()
    assert sent == 2 * 150 * 3
    assert klines == [(symbol, m0 + k * M, 30 * 3) for symbol in symbols for k in range(3)]
    assert metrics["duplicate_rows"] == 0
    assert not any(metrics.get(key) for key in ("buffer_dropped_rows", "spool_full_rows",
                                                "lost_at_shutdown", "unwritable_rows"))
