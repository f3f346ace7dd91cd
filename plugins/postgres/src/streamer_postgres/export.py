"""``streamer export``: a time range of a postgres sink's table out to CSV or Parquet.

    streamer export -c streamer.toml --from 2026-12-01T00:00Z --to 2026-12-02T00:00Z \\
        --symbol BTCUSDT --format parquet -o btc.parquet

Rows come through a server-side cursor, ``FETCH_ROWS`` at a time, and are written as they
come: memory stays bounded whatever the range. Ordered by symbol, then time. CSV keeps the
stored decimals exactly (``price``, ``size``, OHLCV as the database's text); Parquet has typed
columns (``timestamp[ms, UTC]``, decimals as ``float64``, as the files sink writes them).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from streamer.intervals import parse_interval

#: Rows per round trip of the server-side cursor (and per Parquet row group).
FETCH_ROWS = 10_000


_MS = "(extract(epoch FROM {}) * 1000)::bigint"
#: Per table: output columns (name, SQL expression, Parquet type name), time column.
_COLUMNS: dict[str, tuple[list[tuple[str, str, str]], str]] = {
    "trades": ([("exchange", "exchange", "string"), ("channel", "channel", "string"),
                ("symbol", "symbol", "string"), ("trade_id", "trade_id", "string"),
                ("ts", _MS.format("ts"), "ts"), ("side", "side", "string"),
                ("price", "price::text", "float"), ("size", "size::text", "float"),
                ("tick_direction", "tick_direction", "string"),
                ("block_trade", "block_trade", "bool"), ("rpi", "rpi", "bool"),
                ("seq", "seq", "int")], "ts"),
    "klines": ([("exchange", "exchange", "string"), ("channel", "channel", "string"),
                ("symbol", "symbol", "string"), ("interval_ms", "interval_ms", "int"),
                ("open_time", _MS.format("open_time"), "ts"), ("open", "open::text", "float"),
                ("high", "high::text", "float"), ("low", "low::text", "float"),
                ("close", "close::text", "float"), ("volume", "volume::text", "float"),
                ("turnover", "turnover::text", "float"), ("trade_count", "trade_count", "int"),
                ("partial", "partial", "bool")], "open_time"),
    "tickers": ([("exchange", "exchange", "string"), ("channel", "channel", "string"),
                 ("symbol", "symbol", "string"), ("ts", _MS.format("ts"), "ts"),
                 ("fields", "fields::text", "string")], "ts"),
}


def _when(text: str) -> dt.datetime:
    """An ISO 8601 time; UTC when it names no offset."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an ISO 8601 time such as 2026-12-01T00:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="streamer.toml",
                        help="pipeline file (default: ./streamer.toml)")
    parser.add_argument("--sink", help="the postgres sink of this name (default: the only one)")
    parser.add_argument("--table", choices=sorted(_COLUMNS), default="trades")
    parser.add_argument("--from", dest="start", type=_when, required=True,
                        help="first time included (ISO 8601; UTC when no offset)")
    parser.add_argument("--to", dest="end", type=_when, required=True,
                        help="first time excluded")
    parser.add_argument("--symbol", action="append", default=[],
                        help="only this symbol (repeat for more; default: all)")
    parser.add_argument("--channel", help="only this channel (linear, spot, ...)")
    parser.add_argument("--interval", help="klines only: this interval (1m, 1h, ...)")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("-o", "--output", default="-",
                        help="output file (default: standard output, CSV only)")


def _query(schema: str, table: str, args: argparse.Namespace,
           exchange: str) -> tuple[str, list[Any]]:
    columns, time_column = _COLUMNS[table]
    where = ["exchange = %s", f"{time_column} >= %s", f"{time_column} < %s"]
    params: list[Any] = [exchange, args.start, args.end]
    if args.symbol:
        where.append("symbol = ANY(%s)")
        params.append(list(args.symbol))
    if args.channel:
        where.append("channel = %s")
        params.append(args.channel)
    if args.interval:
        where.append("interval_ms = %s")
        params.append(parse_interval(args.interval))
    order = ("symbol, interval_ms, open_time" if table == "klines"
             else "symbol, ts, trade_id" if table == "trades" else "symbol, ts")
    select = ", ".join(expr for _, expr, _ in columns)
    return (f"SELECT {select} FROM {schema}.{table} WHERE {' AND '.join(where)} "
            f"ORDER BY {order}", params)


def _chunks(conn: Any, sql: str, params: Sequence[Any]) -> Iterator[list[tuple[Any, ...]]]:
    with conn.transaction(), conn.cursor(name="streamer_export") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            yield rows


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _write_csv(chunks: Iterator[list[tuple[Any, ...]]], columns: list[tuple[str, str, str]],
               out: Any) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _, _ in columns])
    times = [i for i, (_, _, kind) in enumerate(columns) if kind == "ts"]
    n = 0
    for rows in chunks:
        for row in rows:
            values = list(row)
            for i in times:
                values[i] = _iso(values[i])
            writer.writerow(["" if v is None else v for v in values])
        n += len(rows)
    return n


def _write_parquet(chunks: Iterator[list[tuple[Any, ...]]],
                   columns: list[tuple[str, str, str]], path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "int": pa.int64(), "bool": pa.bool_(),
             "float": pa.float64(), "ts": pa.timestamp("ms", tz="UTC")}
    schema = pa.schema([(name, types[kind]) for name, _, kind in columns])
    n = 0
    with pq.ParquetWriter(path, schema) as writer:
        for rows in chunks:
            arrays = []
            for i, (_, _, kind) in enumerate(columns):
                values = [row[i] for row in rows]
                if kind == "float":
                    values = [None if v is None else float(v) for v in values]
                arrays.append(pa.array(values, type=types[kind]))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            n += len(rows)
    return n


def main(args: argparse.Namespace) -> int:
    from streamer_postgres.command import postgres_sinks

    if args.format == "parquet":
        if args.output == "-":
            print("--format parquet needs -o FILE", file=sys.stderr)
            return 2
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            print("--format parquet needs pyarrow: pip install 'streamer-postgres[parquet]'",
                  file=sys.stderr)
            return 2
    if args.interval and args.table != "klines":
        print("--interval is for --table klines", file=sys.stderr)
        return 2
    if args.end <= args.start:
        print("--to must come after --from", file=sys.stderr)
        return 2
    sinks = postgres_sinks(args.config, args.sink)
    if sinks is None:
        return 2
    if len(sinks) != 1:
        what = "no postgres sink" if not sinks else "several postgres sinks (name one: --sink)"
        print(f"{args.config}: {what}", file=sys.stderr)
        return 2
    config = sinks[0].options
    import psycopg

    columns = _COLUMNS[args.table][0]
    sql, params = _query(config.schema, args.table, args, config.exchange)
    try:
        with psycopg.connect(config.dsn, password=os.environ.get(config.password_env) or None,
                             connect_timeout=max(1, round(config.connect_timeout)),
                             application_name="streamer-export") as conn:
            chunks = _chunks(conn, sql, params)
            if args.format == "parquet":
                n = _write_parquet(chunks, columns, args.output)
            elif args.output == "-":
                n = _write_csv(chunks, columns, sys.stdout)
            else:
                with open(args.output, "w", newline="") as f:
                    n = _write_csv(chunks, columns, f)
    except psycopg.Error as exc:
        print(f"{config.describe()} schema {config.schema}: {type(exc).__name__}: "
              f"{(str(exc).splitlines() or [''])[0]}", file=sys.stderr)
        return 1
    print(f"exported {n} rows of {config.schema}.{args.table}", file=sys.stderr)
    return 0
