"""The sink's migrations: from an empty database, run again and again, and through
`streamer db migrate -c streamer.toml`. TimescaleDB is not installed on the test machine:
these test the plain tables, that version 2 (hypertables) stays pending without it, and that
version 3 (trade_coverage) applies all the same."""

from __future__ import annotations

import os
import subprocess
import sys

from postgres_server import PASSWORD_ENV

from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.database import Database
from streamer_postgres.migrations import MIGRATIONS, applied_versions


def _database(server, schema) -> Database:
    return Database(PostgresSinkConfig(dsn=server.dsn, password_env=PASSWORD_ENV, schema=schema))


def _primary_key(conn, schema: str, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)", (f"{schema}.{table}",))]


def test_migrations_from_empty_then_again_twice_change_nothing(postgres_server,
                                                                postgres_schema):
    database = _database(postgres_server, postgres_schema)
    try:
        first = database.migrate()
        assert [m.version for m in first.applied] == [1, 3]
        assert [m.version for m in first.skipped] == [2] and not first.timescale
        for _ in range(2):
            again = database.migrate()
            assert again.applied == () and [m.version for m in again.skipped] == [2]
    finally:
        database.close()
    with postgres_server.connect() as conn:
        assert applied_versions(conn, postgres_schema) == [1, 3]
        assert _primary_key(conn, postgres_schema, "trade_coverage") == ["segment"]
        coverage = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'trade_coverage'", (postgres_schema,)
        ).fetchall())
        assert coverage == {"segment": "text", "exchange": "text", "channel": "text",
                            "symbol": "text", "from_ts": "timestamp with time zone",
                            "to_ts": "timestamp with time zone", "open": "boolean",
                            "updated_at": "timestamp with time zone"}
        assert _primary_key(conn, postgres_schema, "trades") == [
            "exchange", "channel", "symbol", "trade_id"]
        assert _primary_key(conn, postgres_schema, "klines") == [
            "exchange", "channel", "symbol", "interval_ms", "open_time"]
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'trades'", (postgres_schema,)).fetchall())
        assert types["price"] == types["size"] == "numeric"
        assert types["ts"] == "timestamp with time zone"
        indexes = [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = "
            "'trades_symbol_ts'", (postgres_schema,))]
        assert indexes and indexes[0].endswith("(exchange, channel, symbol, ts)")


def test_a_schema_made_before_coverage_gets_it_by_the_next_migrate(postgres_server,
                                                                    postgres_schema):
    # As the sink of an older release left it: version 1 and the migrations table.
    with postgres_server.connect() as conn, conn.transaction():
        for statement in MIGRATIONS[0].statements(postgres_schema):
            conn.execute(statement)
        conn.execute(f"CREATE TABLE {postgres_schema}.schema_migrations (version integer "
                     "PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
                     "DEFAULT now())")
        conn.execute(f"INSERT INTO {postgres_schema}.schema_migrations (version, name) "
                     "VALUES (1, 'tables trades, klines, tickers')")
        conn.execute(f"INSERT INTO {postgres_schema}.trades (exchange, channel, symbol, "
                     "trade_id, ts, side, price, size) VALUES ('bybit', 'linear', 'BTCUSDT', "
                     "'t1', now(), 'Buy', 1, 1)")
    database = _database(postgres_server, postgres_schema)
    try:
        assert [m.version for m in database.migrate().applied] == [3]
        for _ in range(2):
            assert database.migrate().applied == ()
    finally:
        database.close()
    with postgres_server.connect() as conn:
        assert applied_versions(conn, postgres_schema) == [1, 3]
        assert conn.execute(f"SELECT count(*) FROM {postgres_schema}.trades").fetchone() == (1,)
        assert conn.execute(f"SELECT count(*) FROM {postgres_schema}.trade_coverage"
                            ).fetchone() == (0,)


def test_streamer_db_migrate_applies_then_reports_nothing_to_do(postgres_server,
                                                               postgres_schema, tmp_path):
    toml = tmp_path / "streamer.toml"
    toml.write_text(f"""
[[sources]]
type = "bybit.linear"
symbols = ["BTCUSDT"]

[[sinks]]
name = "history"
type = "postgres"
inputs = ["bybit.linear"]
dsn = "{postgres_server.dsn}"
password_env = "{PASSWORD_ENV}"
schema = "{postgres_schema}"
""")

    def migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streamer", "db", "migrate", "-c",
                               str(toml)], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ))

    done = migrate()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(f"schema {postgres_schema}: applied 1 (tables trades, klines, "
                             "tickers), 3 (table trade_coverage)")
    assert "pending 2" in lines[1] and "TimescaleDB extension is not installed" in lines[1]
    again = migrate()
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith(f"schema {postgres_schema}: applied none")


def test_streamer_db_migrate_without_a_postgres_sink_fails(tmp_path):
    toml = tmp_path / "streamer.toml"
    toml.write_text('[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n\n'
                    '[[sinks]]\ntype = "console"\ninputs = ["bybit.linear"]\n')
    done = subprocess.run([sys.executable, "-m", "streamer", "db", "migrate", "-c", str(toml)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no postgres sink to migrate" in done.stderr
