"""`streamer export`: a range of the stored trades and klines out as CSV and Parquet, exactly
as stored, through the command line."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pyarrow.parquet as pq
import trio
from pg_helpers import T0, kline, make_sink, running, trade, wait_until
from postgres_server import PASSWORD_ENV


def _toml(tmp_path, server, schema) -> str:
    path = tmp_path / "streamer.toml"
    path.write_text(f"""
[[sources]]
type = "bybit.linear"
symbols = ["BTCUSDT"]

[[sinks]]
type = "postgres"
inputs = ["bybit.linear"]
dsn = "{server.dsn}"
password_env = "{PASSWORD_ENV}"
schema = "{schema}"
""")
    return str(path)


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamer", "export", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


async def _store(server, schema) -> None:
    sink = make_sink(server, schema)
    events = [trade(i) for i in range(10)] + [trade(i, symbol="ETHUSDT") for i in range(5)]
    events += [kline("BTCUSDT", T0), kline("BTCUSDT", T0 + 60_000, close=1.75)]
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await inbox.put(events)
            await wait_until(lambda: sink.writer.written_rows == len(events))


async def test_export_trades_of_a_range_and_symbol_as_csv_and_parquet(
        postgres_server, postgres_schema, tmp_path):
    await _store(postgres_server, postgres_schema)
    toml = _toml(tmp_path, postgres_server, postgres_schema)
    # T0 + 2 .. T0 + 7 excluded: trades 2..6 of BTCUSDT.
    window = ["--from", "2023-11-14T22:14:00.002Z", "--to", "2023-11-14T22:14:00.007Z"]
    done = _export("-c", toml, *window, "--symbol", "BTCUSDT")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["trade_id"] for r in rows] == ["t2", "t3", "t4", "t5", "t6"]
    assert rows[0] == {"exchange": "bybit", "channel": "linear", "symbol": "BTCUSDT",
                       "trade_id": "t2", "ts": "2023-11-14T22:14:00.002Z", "side": "Sell",
                       "price": "102.5", "size": "0.001", "tick_direction": "",
                       "block_trade": "", "rpi": "", "seq": ""}
    assert "exported 5 rows" in done.stderr

    out = tmp_path / "btc.parquet"
    done = _export("-c", toml, *window, "--format", "parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    # ETHUSDT's too (no --symbol), after BTCUSDT's.
    assert table.column("trade_id").to_pylist() == ["t2", "t3", "t4", "t5", "t6",
                                                    "t2", "t3", "t4"]
    assert table.column("symbol").to_pylist()[-1] == "ETHUSDT"
    assert table.column("price").to_pylist()[0] == 102.5
    assert str(table.schema.field("ts").type) == "timestamp[ms, tz=UTC]"


async def test_export_klines_of_an_interval(postgres_server, postgres_schema, tmp_path):
    await _store(postgres_server, postgres_schema)
    toml = _toml(tmp_path, postgres_server, postgres_schema)
    done = _export("-c", toml, "--table", "klines", "--interval", "1m", "--from",
                   "2023-11-14T22:00:00Z", "--to", "2023-11-14T23:00:00Z")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["open_time"], r["close"]) for r in rows] == [
        ("2023-11-14T22:14:00.000Z", "1.5"), ("2023-11-14T22:15:00.000Z", "1.75")]


def test_export_refuses_parquet_to_stdout_and_an_empty_range(tmp_path):
    done = _export("--from", "2026-01-01", "--to", "2026-01-02", "--format", "parquet")
    assert done.returncode == 2 and "needs -o FILE" in done.stderr
    done = _export("--from", "2026-01-02", "--to", "2026-01-01")
    assert done.returncode == 2 and "--to must come after --from" in done.stderr
