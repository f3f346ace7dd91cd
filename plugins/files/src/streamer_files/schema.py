"""Parquet schemas per data type (documented in docs/plugins/files.md).

Columns carry the wire format's field names. Times (``T``, ``timestamp``, ``ts``) become
``timestamp[ms, UTC]``; Bybit's decimal strings (trade ``p`` and ``v``) become ``float64``
(the double nearest the decimal, as ``float()`` gives); everything else keeps its wire type.
A data type without a schema here (a plugin's own event) is written with the types pyarrow
infers from its wire dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

TS = pa.timestamp("ms", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    "trades": pa.schema([
        ("T", TS), ("s", pa.string()), ("S", pa.string()), ("v", pa.float64()),
        ("p", pa.float64()), ("L", pa.string()), ("i", pa.string()), ("BT", pa.bool_()),
        ("RPI", pa.bool_()), ("seq", pa.int64()),
    ]),
    "klines": pa.schema([
        ("symbol", pa.string()), ("interval", pa.int64()), ("timestamp", TS),
        ("open", pa.float64()), ("high", pa.float64()), ("low", pa.float64()),
        ("close", pa.float64()), ("volume", pa.float64()), ("trade_count", pa.int64()),
        ("closed", pa.bool_()), ("turnover", pa.float64()), ("partial", pa.bool_()),
    ]),
    "price": pa.schema([("symbol", pa.string()), ("price", pa.float64()), ("timestamp", TS)]),
    "liquidations": pa.schema([
        ("T", TS), ("s", pa.string()), ("S", pa.string()), ("v", pa.float64()),
        ("p", pa.float64()),
    ]),
    "derivatives": pa.schema([
        ("symbol", pa.string()), ("ts", TS), ("fundingRate", pa.float64()),
        ("nextFundingTime", TS), ("openInterest", pa.float64()),
        ("openInterestValue", pa.float64()), ("markPrice", pa.float64()),
        ("indexPrice", pa.float64()),
    ]),
    "funding": pa.schema([
        ("symbol", pa.string()), ("fundingTime", TS), ("fundingRate", pa.float64()),
    ]),
    # Levels keep the exchange's decimal strings: a book is exact, never rounded to floats.
    "book": pa.schema([
        ("symbol", pa.string()), ("kind", pa.string()),
        ("bids", pa.list_(pa.list_(pa.string()))), ("asks", pa.list_(pa.list_(pa.string()))),
        ("update_id", pa.int64()), ("ts", TS), ("seq", pa.int64()), ("engine_ts", TS),
    ]),
}

#: Wire fields that are decimal strings but stored as float64.
_AS_FLOAT = {"trades": ("v", "p"), "liquidations": ("v", "p")}


def _float_or_none(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _ticker_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Tickers: ``symbol`` string, ``ts`` timestamp, then one column per Bybit field in order
    of first appearance: float64 when any value is a number (other values become null, e.g.
    Bybit's empty strings), else string."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    numeric = {k for k in keys
               if any(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)
                      for r in rows)}
    fields = [pa.field("symbol", pa.string()), pa.field("ts", TS)]
    arrays = [pa.array([r.get("symbol") for r in rows], pa.string()),
              pa.array([r.get("ts") for r in rows], TS)]
    for k in keys:
        if k in ("symbol", "ts"):
            continue
        if k in numeric:
            fields.append(pa.field(k, pa.float64()))
            arrays.append(pa.array([_float_or_none(r.get(k)) for r in rows], pa.float64()))
        else:
            fields.append(pa.field(k, pa.string()))
            arrays.append(pa.array([None if r.get(k) is None else str(r.get(k))
                                    for r in rows], pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def to_table(data_type: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A pyarrow table of ``rows`` (wire dicts of one data type)."""
    if data_type == "ticker":
        return _ticker_table(rows)
    schema = SCHEMAS.get(data_type)
    if schema is None:
        return pa.Table.from_pylist(list(rows))
    as_float = _AS_FLOAT.get(data_type, ())
    columns = {}
    for field in schema:
        name = field.name
        values = [r.get(name) for r in rows]
        if name in as_float:
            values = [None if v is None else float(v) for v in values]
        if name == "partial":
            values = [bool(v) for v in values]
        columns[name] = pa.array(values, field.type)
    return pa.Table.from_pydict(columns, schema=schema)


__all__ = ["SCHEMAS", "TS", "to_table"]
