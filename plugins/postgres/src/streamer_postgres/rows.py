"""Events as table rows: the columns the writer COPYs into its staging tables.

Rows are plain tuples of str, int, float, bool and None, so the same rows go to COPY and,
msgpack-encoded, to the spool. Times stay epoch milliseconds here; the INSERT from the
staging table turns them into ``timestamptz`` exactly (``'epoch' + ms * 1 ms``). The
``exchange`` column is the sink's setting, added by the INSERT, not carried by every row.

The writer's queue also holds coverage steps
(:class:`~streamer_postgres.coverage.CoverageStep`): they become ``coverage`` rows, one per
segment and batch (the steps of a segment in one batch follow each other: merged into one).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from streamer import Event, Kline, Ticker, Trade
from streamer_postgres.coverage import CoverageStep

#: Rows of one write, by table: ``{"trades": [...], "klines": [...], "tickers": [...]}``.
Rows = dict[str, list[tuple[object, ...]]]

#: Staging columns of each table, in row order (name, staging type).
STAGING_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "trades": (("channel", "text"), ("symbol", "text"), ("trade_id", "text"),
               ("ts_ms", "bigint"), ("side", "text"), ("price", "numeric"),
               ("size", "numeric"), ("tick_direction", "text"), ("block_trade", "boolean"),
               ("rpi", "boolean"), ("seq", "bigint")),
    "klines": (("channel", "text"), ("symbol", "text"), ("interval_ms", "bigint"),
               ("open_ms", "bigint"), ("open", "numeric"), ("high", "numeric"),
               ("low", "numeric"), ("close", "numeric"), ("volume", "numeric"),
               ("turnover", "numeric"), ("trade_count", "bigint"), ("partial", "boolean")),
    "tickers": (("channel", "text"), ("symbol", "text"), ("ts_ms", "bigint"),
                ("fields", "jsonb")),
    "coverage": (("segment", "text"), ("channel", "text"), ("symbol", "text"),
                 ("from_ms", "bigint"), ("to_ms", "bigint"), ("first", "boolean"),
                 ("ends", "boolean")),
}
#: Tables of event rows (``coverage`` rows are no events: not counted as rows written).
EVENT_TABLES = ("trades", "klines", "tickers")
#: The data type a sink keeps (``data_types``) -> its table.
TABLE_OF = {"trades": "trades", "klines": "klines", "ticker": "tickers"}

_json = msgspec.json.Encoder()


def kept(events: Iterable[Event], data_types: frozenset[str]) -> list[Event]:
    """The events this sink stores: of its data types, and klines only once closed."""
    return [e for e in events
            if e.data_type in data_types and (not isinstance(e, Kline) or e.closed)]


def rows_of(items: Iterable[Event | CoverageStep]) -> Rows:
    """The rows of ``items`` (events already filtered by :func:`kept`, and coverage steps),
    by table, in order."""
    rows: Rows = {}
    steps: dict[str, list[object]] = {}
    for e in items:
        if isinstance(e, CoverageStep):
            merged = steps.get(e.segment)
            if merged is None:
                steps[e.segment] = list(e.row())
            else:  # the next step of the segment: it begins where the last one ended
                merged[4] = e.end
                merged[6] = e.ends
            continue
        if isinstance(e, Trade):
            rows.setdefault("trades", []).append(
                (e.channel, e.symbol, e.trade_id, e.ts, e.side, e.price, e.size,
                 e.tick_direction, e.block_trade, e.rpi, e.seq))
        elif isinstance(e, Kline):
            rows.setdefault("klines", []).append(
                (e.channel, e.symbol, e.interval, e.timestamp, e.open, e.high, e.low, e.close,
                 e.volume, e.turnover, e.trade_count, e.partial))
        elif isinstance(e, Ticker):
            rows.setdefault("tickers", []).append(
                (e.channel, e.symbol, e.ts, _json.encode(e.fields).decode()))
    if steps:
        rows["coverage"] = [tuple(step) for step in steps.values()]
    return rows


def count(rows: Rows) -> int:
    """The event rows of ``rows`` (coverage rows are not counted)."""
    return sum(len(rows.get(table, ())) for table in EVENT_TABLES)
