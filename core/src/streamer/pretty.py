"""One short human line per wire item: the console sink's table and ``streamer tail``.

Times are UTC in an ISO-like form with milliseconds (``2025-11-26T07:59:00.000Z``),
interval lengths by their configuration label (``500ms``, ``1m``, ``1D``), and a kline built
from incomplete trades says ``partial``. Items that lack a field a line needs are shown as
their JSON.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec

from streamer.intervals import interval_label

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def utc_time(ms: Any) -> str:
    """Epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (anything else as it is)."""
    if not isinstance(ms, int) or isinstance(ms, bool):
        return str(ms)
    try:
        moment = _EPOCH + _dt.timedelta(milliseconds=ms)
    except OverflowError:
        return str(ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def interval_text(ms: Any) -> str:
    """An interval length in ms by its label (``500ms``, ``1m``, ``1D``)."""
    try:
        return interval_label(ms)
    except (ValueError, TypeError):
        return f"{ms}ms"


def number(value: Any) -> str:
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _kline(item: dict[str, Any]) -> str:
    state = "closed" if item.get("closed") else "open  "
    line = (
        f"{item['symbol']:<14} {interval_text(item['interval']):>5} "
        f"{utc_time(item['timestamp'])} {state} O {number(item['open'])} "
        f"H {number(item['high'])} L {number(item['low'])} C {number(item['close'])} "
        f"V {number(item['volume'])} n {item.get('trade_count')}"
    )
    return line + " partial" if item.get("partial") else line


def _book(item: dict[str, Any]) -> str:
    """A book message by its best levels and how many levels it carries."""
    bids, asks = item["bids"], item["asks"]
    bid = f"{bids[0][1]} @ {bids[0][0]}" if bids else "-"
    ask = f"{asks[0][1]} @ {asks[0][0]}" if asks else "-"
    return (f"{item['symbol']:<14} {utc_time(item['ts'])} {item['kind']:<8} "
            f"u {item['update_id']} bid {bid} ask {ask} ({len(bids)}b/{len(asks)}a)")


def item_line(data_type: Any, item: Any) -> str:
    """The line's body for one item of a ``data_type`` envelope."""
    try:
        if data_type == "klines":
            return _kline(item)
        if data_type in ("trades", "liquidations"):
            return f"{item['s']:<14} {utc_time(item['T'])} {item['S']:<4} {item['v']} @ {item['p']}"
        if data_type == "funding":
            return (f"{item['symbol']:<14} {utc_time(item['fundingTime'])} rate "
                    f"{number(item['fundingRate'])}")
        if data_type == "derivatives":
            return (f"{item['symbol']:<14} {utc_time(item['ts'])} funding "
                    f"{number(item['fundingRate'])} OI {number(item['openInterest'])} mark "
                    f"{number(item['markPrice'])} index {number(item['indexPrice'])}")
        if data_type == "price":
            return f"{item['symbol']:<14} {utc_time(item['timestamp'])} {number(item['price'])}"
        if data_type == "book":
            return _book(item)
        body = f"{item.get('symbol', ''):<14} last {item.get('lastPrice', '')}"
        return body + (f" mark {item['markPrice']}" if "markPrice" in item else "")
    except (KeyError, TypeError, AttributeError):
        return msgspec.json.encode(item).decode()


def envelope_lines(envelope: dict[str, Any]) -> list[str]:
    """One line per item of a wire envelope."""
    data_type = envelope.get("data_type", "?")
    prefix = f"{envelope.get('channel', '?'):<6} {data_type:<7}"
    data = envelope.get("data")
    return [f"{prefix} {item_line(data_type, item)}" for item in
            (data if isinstance(data, list) else [])]
