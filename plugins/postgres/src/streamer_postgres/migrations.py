"""The sink's tables, created by numbered migrations recorded in ``<schema>.schema_migrations``.

:func:`migrate` applies the missing ones in order, in one transaction under an advisory lock,
so two replicas starting together (or ``streamer db migrate`` next to a running sink) apply
each migration once. Running it again changes nothing.

Version 1 makes the plain tables. Version 2 runs only where the TimescaleDB extension is
installed in the database (``CREATE EXTENSION timescaledb`` is the operator's step): it turns
the tables into hypertables and adds the continuous aggregate ``candles_1m`` of the trades.
Without TimescaleDB version 2 stays pending and is applied by the first migrate after the
extension appears. A hypertable's unique keys must hold its time column, so version 2 adds
``ts`` / ``open_time`` to the primary keys; a trade's time never changes, so each trade is
still stored once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

#: A fixed key for pg_advisory_xact_lock: migrations of any schema run one at a time.
_LOCK_KEY = 0x5354524D  # "STRM"


def _v1_tables(s: str) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE {s}.trades (
            exchange text NOT NULL, channel text NOT NULL, symbol text NOT NULL,
            trade_id text NOT NULL, ts timestamptz NOT NULL, side text NOT NULL,
            price numeric NOT NULL, size numeric NOT NULL, tick_direction text,
            block_trade boolean, rpi boolean, seq bigint,
            PRIMARY KEY (exchange, channel, symbol, trade_id))""",
        f"CREATE INDEX trades_symbol_ts ON {s}.trades (exchange, channel, symbol, ts)",
        f"""CREATE TABLE {s}.klines (
            exchange text NOT NULL, channel text NOT NULL, symbol text NOT NULL,
            interval_ms bigint NOT NULL, open_time timestamptz NOT NULL,
            open numeric NOT NULL, high numeric NOT NULL, low numeric NOT NULL,
            close numeric NOT NULL, volume numeric NOT NULL, turnover numeric,
            trade_count bigint, partial boolean NOT NULL DEFAULT false,
            PRIMARY KEY (exchange, channel, symbol, interval_ms, open_time))""",
        f"""CREATE TABLE {s}.tickers (
            exchange text NOT NULL, channel text NOT NULL, symbol text NOT NULL,
            ts timestamptz NOT NULL, fields jsonb NOT NULL,
            PRIMARY KEY (exchange, channel, symbol, ts))""",
    ]


def _v2_timescale(s: str) -> list[str]:
    return [
        f"ALTER TABLE {s}.trades DROP CONSTRAINT trades_pkey",
        f"ALTER TABLE {s}.trades ADD PRIMARY KEY (exchange, channel, symbol, trade_id, ts)",
        f"SELECT create_hypertable('{s}.trades', 'ts', migrate_data => true)",
        f"SELECT create_hypertable('{s}.klines', 'open_time', migrate_data => true)",
        f"SELECT create_hypertable('{s}.tickers', 'ts', migrate_data => true)",
        f"""CREATE MATERIALIZED VIEW {s}.candles_1m WITH (timescaledb.continuous) AS
            SELECT exchange, channel, symbol, time_bucket('1 minute', ts) AS open_time,
                   first(price, ts) AS open, max(price) AS high, min(price) AS low,
                   last(price, ts) AS close, sum(size) AS volume,
                   sum(price * size) AS turnover, count(*) AS trade_count
            FROM {s}.trades GROUP BY exchange, channel, symbol, time_bucket('1 minute', ts)
            WITH NO DATA""",
    ]


def _v3_coverage(s: str) -> list[str]:
    return [
        f"""CREATE TABLE {s}.trade_coverage (
            segment text PRIMARY KEY, exchange text NOT NULL, channel text NOT NULL,
            symbol text NOT NULL, from_ts timestamptz NOT NULL, to_ts timestamptz NOT NULL,
            open boolean NOT NULL DEFAULT true,
            updated_at timestamptz NOT NULL DEFAULT now())""",
        f"CREATE INDEX trade_coverage_symbol ON {s}.trade_coverage "
        "(exchange, channel, symbol, to_ts)",
    ]


@attrs.frozen
class Migration:
    version: int
    name: str
    statements: Callable[[str], list[str]]
    #: Applied only when the TimescaleDB extension is installed.
    needs_timescale: bool = False


MIGRATIONS = (
    Migration(1, "tables trades, klines, tickers", _v1_tables),
    Migration(2, "timescaledb hypertables, continuous aggregate candles_1m", _v2_timescale,
              needs_timescale=True),
    Migration(3, "table trade_coverage", _v3_coverage),
)


@attrs.frozen
class MigrateResult:
    applied: tuple[Migration, ...]
    #: Migrations left pending because TimescaleDB is not installed.
    skipped: tuple[Migration, ...]
    timescale: bool


def migrate(conn: Any, schema: str) -> MigrateResult:
    """Apply the missing migrations to ``schema`` (a validated, lower-case SQL name) over the
    psycopg connection ``conn``; commits."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                version integer PRIMARY KEY, name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {row[0] for row in conn.execute(
            f"SELECT version FROM {schema}.schema_migrations")}
        timescale = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0] > 0
        applied: list[Migration] = []
        skipped: list[Migration] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            if migration.needs_timescale and not timescale:
                skipped.append(migration)
                continue
            for statement in migration.statements(schema):
                conn.execute(statement)
            conn.execute(f"INSERT INTO {schema}.schema_migrations (version, name) "
                         "VALUES (%s, %s)", (migration.version, migration.name))
            applied.append(migration)
    return MigrateResult(tuple(applied), tuple(skipped), timescale)


def applied_versions(conn: Any, schema: str) -> list[int]:
    """The versions recorded in ``schema`` ([] when it has no migrations table)."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{schema}.schema_migrations",)
                          ).fetchone()[0]
    if exists is None:
        return []
    return [row[0] for row in conn.execute(
        f"SELECT version FROM {schema}.schema_migrations ORDER BY version")]
