"""One psycopg connection and the write of one batch, run in a worker thread.

A write is one transaction: each table's rows are COPYed into a temporary staging table
(``ON COMMIT DELETE ROWS``, made once per connection), then ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING`` moves them into the real table. A batch retried after a connection died
mid-commit, or the same trades written by two replicas, are stored once: the primary keys
decide. A closed kline replaces a stored one only when that one was partial (a first candle
built from part of its minute). Coverage steps (:mod:`streamer_postgres.coverage`) go in the
same transaction: a segment's first step inserts its row, a later one extends the row only
if it ends where the step begins.

psycopg is imported here, and this module only when the sink is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psycopg

from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.migrations import MigrateResult, migrate
from streamer_postgres.rows import EVENT_TABLES, STAGING_COLUMNS, Rows

_MS = "(timestamptz 'epoch' + {} * interval '1 millisecond')"

#: Failures worth a retry on a new connection: the server is gone, restarting, in recovery,
#: or the connection broke mid-write.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (psycopg.OperationalError,
                                                 psycopg.InterfaceError, OSError)
_AUTH_MARKS = ("password authentication failed", "no password supplied",
               "authentication failed")


def is_auth_error(exc: BaseException) -> bool:
    """Rejected credentials or an unknown role: retrying cannot fix them. libpq reports a
    refused connection as an OperationalError without SQLSTATE, hence the message test."""
    if isinstance(exc, (psycopg.errors.InvalidAuthorizationSpecification,
                        psycopg.errors.InvalidPassword)):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return any(mark in text for mark in _AUTH_MARKS) or (
        'role "' in text and "does not exist" in text)


def _coverage_sql(schema: str) -> tuple[str, str]:
    """The insert of the segments' first steps (with the exchange as its parameter) and the
    update of their rows by the later ones."""
    staging = "streamer_staging_coverage"
    return (
        f"INSERT INTO {schema}.trade_coverage (segment, exchange, channel, symbol, from_ts, "
        f"to_ts, open) SELECT segment, %s, channel, symbol, {_MS.format('from_ms')}, "
        f"{_MS.format('to_ms')}, NOT ends FROM {staging} WHERE first "
        "ON CONFLICT (segment) DO NOTHING",
        # A retried batch finds the row already past from_ts: nothing changes.
        f"UPDATE {schema}.trade_coverage c SET to_ts = {_MS.format('s.to_ms')}, "
        f"open = NOT s.ends, updated_at = now() FROM {staging} s WHERE NOT s.first "
        f"AND c.segment = s.segment AND c.to_ts = {_MS.format('s.from_ms')}",
    )


def _insert_sql(schema: str, table: str) -> str:
    staging = f"streamer_staging_{table}"
    if table == "trades":
        return (f"INSERT INTO {schema}.trades (exchange, channel, symbol, trade_id, ts, side, "
                "price, size, tick_direction, block_trade, rpi, seq) "
                f"SELECT %s, channel, symbol, trade_id, {_MS.format('ts_ms')}, side, price, "
                f"size, tick_direction, block_trade, rpi, seq FROM {staging} "
                "ON CONFLICT DO NOTHING")
    if table == "klines":
        return (f"INSERT INTO {schema}.klines AS k (exchange, channel, symbol, interval_ms, "
                "open_time, open, high, low, close, volume, turnover, trade_count, partial) "
                # One row per key (DO UPDATE refuses to touch a row twice): a full candle
                # before a partial one, then the first to arrive (ctid: insertion order).
                f"SELECT DISTINCT ON (channel, symbol, interval_ms, open_ms) %s, channel, "
                f"symbol, interval_ms, {_MS.format('open_ms')}, open, high, low, close, "
                f"volume, turnover, trade_count, partial FROM {staging} "
                "ORDER BY channel, symbol, interval_ms, open_ms, partial, ctid "
                "ON CONFLICT (exchange, channel, symbol, interval_ms, open_time) DO UPDATE SET "
                "open = excluded.open, high = excluded.high, low = excluded.low, "
                "close = excluded.close, volume = excluded.volume, "
                "turnover = excluded.turnover, trade_count = excluded.trade_count, "
                "partial = false WHERE k.partial AND NOT excluded.partial")
    return (f"INSERT INTO {schema}.tickers (exchange, channel, symbol, ts, fields) "
            f"SELECT %s, channel, symbol, {_MS.format('ts_ms')}, fields FROM {staging} "
            "ON CONFLICT DO NOTHING")


class Database:
    """The sink's connection (opened on first use, dropped after a failure)."""

    def __init__(self, config: PostgresSinkConfig) -> None:
        self.config = config
        self._conn: Any = None
        self._inserts = {table: _insert_sql(config.schema, table) for table in EVENT_TABLES}
        self._coverage = _coverage_sql(config.schema)
        self._copies = {
            table: f"COPY streamer_staging_{table} ({', '.join(c for c, _ in columns)}) "
                   "FROM STDIN"
            for table, columns in STAGING_COLUMNS.items()
        }
        #: Set by the trio side when it gave up waiting for a write: the thread still running
        #: it closes the connection when it returns, and nothing uses it again.
        self.abandoned = False

    def connect(self) -> Any:
        if self._conn is None:
            password = os.environ.get(self.config.password_env) or None
            conn = psycopg.connect(
                self.config.dsn, password=password,
                connect_timeout=max(1, round(self.config.connect_timeout)),
                application_name="streamer", autocommit=True,
            )
            try:
                for table, columns in STAGING_COLUMNS.items():
                    conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS streamer_staging_{table} "
                        f"({', '.join(f'{c} {t}' for c, t in columns)}) ON COMMIT DELETE ROWS")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def migrate(self) -> MigrateResult:
        return migrate(self.connect(), self.config.schema)

    def ping(self) -> None:
        self.connect().execute("SELECT 1")

    def write(self, rows: Rows, step_valid: Callable[[str], bool] = lambda _: True) -> int:
        """Store ``rows`` in one transaction; how many event rows were new (the rest were
        stored before). Coverage rows whose segment ``step_valid`` refuses are left out. On
        any failure the connection is closed (the next write opens one)."""
        try:
            conn = self.connect()
            inserted = 0
            with conn.transaction(), conn.cursor() as cur:
                for table, table_rows in rows.items():
                    if table == "coverage":
                        table_rows = [r for r in table_rows if step_valid(str(r[0]))]
                    if not table_rows:
                        continue
                    with cur.copy(self._copies[table]) as copy:
                        for row in table_rows:
                            copy.write_row(row)
                    if table == "coverage":
                        insert, update = self._coverage
                        cur.execute(insert, (self.config.exchange,))
                        cur.execute(update)
                        continue
                    cur.execute(self._inserts[table], (self.config.exchange,))
                    inserted += max(cur.rowcount, 0)
            return inserted
        except BaseException:
            self.close()
            raise
        finally:
            if self.abandoned:
                self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to save
                pass
