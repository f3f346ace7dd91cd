"""Events <-> JetStream messages: subject, ``Nats-Msg-Id`` and payload of each event.

One event is one message, so that de-duplication works per event whatever batches two
replicas happened to read. The payload is the wire envelope with a one-element ``data``
(``{"channel","data_type","data":[...]}``), the same JSON as every other sink.

Subjects (``<p>`` = ``subject_prefix``, ``<ch>`` = the source's channel, e.g. ``linear``)::

    <p>.<ch>.trades.<SYMBOL>
    <p>.<ch>.klines.<interval label>.<SYMBOL>      e.g. bybit.linear.klines.1m.BTCUSDT
    <p>.<ch>.ticker.<SYMBOL>
    <p>.<ch>.price.<SYMBOL>
    <p>.<ch>.liquidations.<SYMBOL>
    <p>.<ch>.derivatives.<SYMBOL>
    <p>.<ch>.funding.<SYMBOL>

Message ids, derived from the event only (so every replica computes the same one):

==================  ===============================================================
trade               ``t:<ch>:<SYMBOL>:<trade id>``
closed kline        ``k:<ch>:<SYMBOL>:<interval ms>:<start ms>``
closed, partial     ``kp:<ch>:<SYMBOL>:<interval ms>:<start ms>`` (never the id of the
                    complete candle, so a partial one cannot shadow it)
kline update        ``ku:<ch>:<SYMBOL>:<interval ms>:<start ms>:<state>`` where
                    ``<state>`` is ``n<trade_count>`` or, when the count is unknown
                    (Bybit's own candles), ``v<volume>c<close>``: equal states are
                    stored once, each new state once
ticker              ``tk:<ch>:<SYMBOL>:<exchange ts>``
price               ``p:<ch>:<SYMBOL>:<exchange ts>``
liquidation         ``l:<ch>:<SYMBOL>:<T>:<S>:<v>:<p>`` (the fields that tell two apart)
derivatives         ``d:<ch>:<SYMBOL>:<exchange ts>``
funding             ``f:<ch>:<SYMBOL>:<funding time>``
==================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from streamer import Book, Derivatives, Event, Funding, Kline, Liquidation, Price, Ticker, Trade
from streamer.intervals import interval_label
from streamer.validators import channel_problem
from streamer_nats.connection import token

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

_label_cache: dict[int, str] = {}


def _label(interval_ms: int) -> str:
    label = _label_cache.get(interval_ms)
    if label is None:
        try:
            label = interval_label(interval_ms)
        except ValueError:
            label = f"{interval_ms}ms"
        _label_cache[interval_ms] = label
    return label


def subject_of(prefix: str, event: Event) -> str:
    ch = token(event.channel)  # a source's name for it: one token whatever it is
    if isinstance(event, Trade):
        return f"{prefix}.{ch}.trades.{token(event.symbol)}"
    if isinstance(event, Kline):
        return f"{prefix}.{ch}.klines.{_label(event.interval)}.{token(event.symbol)}"
    if isinstance(event, Ticker):
        return f"{prefix}.{ch}.ticker.{token(event.symbol)}"
    if isinstance(event, Liquidation):
        return f"{prefix}.{ch}.liquidations.{token(event.symbol)}"
    if isinstance(event, (Derivatives, Funding)):
        return f"{prefix}.{ch}.{event.data_type}.{token(event.symbol)}"
    if isinstance(event, Book):
        return f"{prefix}.{ch}.book.{token(event.symbol)}"
    return f"{prefix}.{ch}.price.{token(event.symbol)}"


def msg_id_of(event: Event) -> str:
    """The deterministic ``Nats-Msg-Id`` of ``event`` (see the module doc)."""
    if isinstance(event, Trade):
        return f"t:{event.channel}:{event.symbol}:{event.trade_id}"
    if isinstance(event, Kline):
        base = f"{event.channel}:{event.symbol}:{event.interval}:{event.timestamp}"
        if event.closed:
            return f"kp:{base}" if event.partial else f"k:{base}"
        if event.trade_count is not None:
            return f"ku:{base}:n{event.trade_count}"
        return f"ku:{base}:v{event.volume!r}c{event.close!r}"
    if isinstance(event, Ticker):
        return f"tk:{event.channel}:{event.symbol}:{event.ts}"
    if isinstance(event, Liquidation):
        return (f"l:{event.channel}:{event.symbol}:{event.ts}:{event.side}:{event.size}:"
                f"{event.price}")
    if isinstance(event, Derivatives):
        return f"d:{event.channel}:{event.symbol}:{event.ts}"
    if isinstance(event, Funding):
        return f"f:{event.channel}:{event.symbol}:{event.funding_time}"
    if isinstance(event, Book):  # u restarts after a reset: the push time tells those apart
        return f"b:{event.channel}:{event.symbol}:{event.kind[0]}{event.update_id}:{event.ts}"
    return f"p:{event.channel}:{event.symbol}:{event.ts}"


def payload_of(event: Event) -> bytes:
    """The wire envelope of this one event."""
    return _encoder.encode(
        {"channel": event.channel, "data_type": event.data_type, "data": [event.to_wire()]}
    )


class DecodeError(ValueError):
    """A message that is not a wire envelope of known events."""


def _trade(channel: str, d: dict[str, Any]) -> Trade:
    return Trade(channel, d["s"], int(d["T"]), d["S"], str(d["p"]), str(d["v"]), str(d["i"]),
                 d.get("L"), d.get("BT"), d.get("RPI"), d.get("seq"))


def _kline(channel: str, d: dict[str, Any]) -> Kline:
    return Kline(channel, d["symbol"], int(d["interval"]), int(d["timestamp"]),
                 float(d["open"]), float(d["high"]), float(d["low"]), float(d["close"]),
                 float(d["volume"]), d.get("trade_count"), bool(d.get("closed", True)),
                 d.get("turnover"), bool(d.get("partial", False)))


def _ticker(channel: str, d: dict[str, Any]) -> Ticker:
    fields = dict(d)
    ts = int(fields.pop("ts"))
    return Ticker(channel, str(fields.get("symbol", "")), ts, fields)


def _liquidation(channel: str, d: dict[str, Any]) -> Liquidation:
    return Liquidation(channel, d["s"], int(d["T"]), d["S"], str(d["v"]), str(d["p"]))


def _derivatives(channel: str, d: dict[str, Any]) -> Derivatives:
    return Derivatives(channel, d["symbol"], int(d["ts"]), d.get("fundingRate"),
                       d.get("nextFundingTime"), d.get("openInterest"),
                       d.get("openInterestValue"), d.get("markPrice"), d.get("indexPrice"))


def _funding(channel: str, d: dict[str, Any]) -> Funding:
    return Funding(channel, d["symbol"], int(d["fundingTime"]), float(d["fundingRate"]))


def _book(channel: str, d: dict[str, Any]) -> Book:
    kind = d["kind"]
    if kind not in ("snapshot", "delta"):
        raise ValueError(f"book kind {kind!r}")
    return Book(channel, d["symbol"], kind, _levels(d["bids"]), _levels(d["asks"]),
                int(d["update_id"]), int(d["ts"]), d.get("seq"), d.get("engine_ts"))


def _levels(levels: Any) -> list[list[str]]:
    if not isinstance(levels, list) or not all(
            isinstance(lv, list) and len(lv) == 2 and all(isinstance(x, str) for x in lv)
            for lv in levels):
        raise ValueError("book levels must be [price, size] strings")
    return levels


def _price(channel: str, d: dict[str, Any]) -> Price:
    return Price(channel, d["symbol"], float(d["price"]), int(d["timestamp"]))


_DECODERS: dict[str, Callable[[str, dict[str, Any]], Event]] = {
    "trades": _trade, "klines": _kline, "ticker": _ticker, "price": _price,
    "liquidations": _liquidation, "derivatives": _derivatives, "funding": _funding,
    "book": _book,
}


def decode_payload(payload: bytes) -> list[Event]:
    """The events of one wire envelope; :class:`DecodeError` naming what is wrong."""
    try:
        env = _decoder.decode(payload)
        channel = env["channel"]
        problem = channel_problem(channel)
        if problem is not None:  # it becomes a key, a subject token, a folder name downstream
            raise ValueError(problem)
        build = _DECODERS[env["data_type"]]
        return [build(channel, d) for d in env["data"]]
    except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"not a wire envelope: {type(exc).__name__}: {exc}") from None
