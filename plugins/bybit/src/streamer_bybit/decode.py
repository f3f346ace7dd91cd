"""Decode Bybit V5 public WebSocket messages into streamer events.

Reused ``msgspec`` decoders into typed Structs (about 5x ``json.loads``: docs/background.md). Trade
messages, nearly all the traffic, are decoded in one pass into :class:`TradeMessage`, chosen
by their first bytes. Every other message (and a trade message that does not decode that way)
takes the general path: the envelope is decoded with ``data`` left raw, then ``data`` is
decoded by the decoder of its topic. A malformed or unexpected message is counted in
``context.metrics`` and logged (rate-limited); it never raises out of
:meth:`MessageDecoder.decode`. That holds for any exception, not only the decode errors
foreseen (a ``data`` nested 50,000 deep makes msgspec raise ``RecursionError``): a message
that raises is counted ``malformed`` and adds nothing, none of its events, to the read.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from streamer import Event, Kline, Metrics, RateLimitedLog, Trade
from streamer_bybit.book_keeper import BOOK_PREFIX, BookKeeper, book_message_decoder
from streamer_bybit.intervals import MS_BY_CODE
from streamer_bybit.liquidations import LiquidationFeed
from streamer_bybit.tickers import PriceTracker, TickerBook

#: Bybit's kline interval codes and their length in ms (the core's table; "M" is a nominal
#: 30 days so that the interval stays a stable key for consumers).
KLINE_INTERVAL_MS: Final[dict[str, int]] = MS_BY_CODE


class TradeItem(msgspec.Struct, gc=False):
    T: int
    s: str
    S: str
    v: str
    p: str
    i: str
    L: str | None = None
    BT: bool | None = None
    RPI: bool | None = None
    seq: int | None = None


class KlineItem(msgspec.Struct, gc=False, kw_only=True):
    start: int
    end: int = 0
    interval: str = ""
    open: str
    close: str
    high: str
    low: str
    volume: str
    turnover: str = ""
    confirm: bool


class TradeMessage(msgspec.Struct, gc=False):
    """A publicTrade push, decoded in one pass.

    The envelope fields mirror :class:`Message` so that exactly the messages the general path
    would call malformed fail here too (and then take the general path, which counts them).
    """

    topic: str
    data: list[TradeItem]
    type: str = ""
    ts: int = 0
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str = ""


class Message(msgspec.Struct, gc=False):
    """Any message: a topic push (``topic`` set) or an op reply (``op`` set: acks, pongs)."""

    topic: str | None = None
    type: str = ""
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw()
    cts: int | None = None  # orderbook: the matching engine's time
    op: str | None = None
    success: bool | None = None
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str = ""


_message_decoder: Final = msgspec.json.Decoder(Message)
_trade_message_decoder: Final = msgspec.json.Decoder(TradeMessage)
_trades_decoder: Final = msgspec.json.Decoder(list[TradeItem])
_klines_decoder: Final = msgspec.json.Decoder(list[KlineItem])
_ticker_decoder: Final = msgspec.json.Decoder(dict[str, Any])

_INF: Final = float("inf")


def check_trade_numbers(trade_id: str, price: str, size: str) -> float:
    """``price`` as a float; ValueError unless price and size are positive finite numbers.
    A trade's price and size travel on as the strings Bybit sent; every consumer (the
    aggregator, a sink's reader) reads them as numbers, so one that is not is refused here."""
    try:
        p = float(price)
        ok = 0.0 < p < _INF and 0.0 < float(size) < _INF
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"trade {trade_id!r}: price {price!r} or size {size!r} is not a "
                         "positive number")
    return p


#: How Bybit (and the fake) start every publicTrade push: the fast path's selector. A message
#: that starts otherwise is still decoded, by the general path.
TRADE_PREFIX: Final = b'{"topic":"publicTrade.'


class MessageDecoder:
    """Turns the payloads of one connection into events; keeps that connection's ticker state.

    ``price_from_trades``: emit :class:`streamer.Price` from the last trade price of
    each message (used when tickers are not subscribed).
    """

    def __init__(
        self,
        channel: str,
        metrics: Metrics,
        log: RateLimitedLog,
        book: TickerBook,
        prices: PriceTracker,
        *,
        price_from_trades: bool = False,
        liquidations: LiquidationFeed | None = None,
    ) -> None:
        self.channel = channel
        self.metrics = metrics
        self.log = log
        self.book = book
        self.prices = prices
        self.price_from_trades = price_from_trades
        #: The connection's allLiquidation topics (None: it has none).
        self.liquidations = liquidations
        #: Trades decoded so far (one add per message, read by the metrics).
        self.trades = 0
        #: The connection's order books ("orderbook" stream; None without).
        self.books: BookKeeper | None = None

    def decode(self, payload: bytes, out: list[Event]) -> Message | None:
        """Append the events of one message to ``out``; return it if it is an op reply."""
        replies = self.decode_read([payload], out)
        return replies[0] if replies else None

    def decode_read(self, payloads: list[bytes], out: list[Event]) -> list[Message]:
        """Append the events of one read's messages to ``out``, in order; return the op
        replies among them."""
        replies: list[Message] = []
        channel = self.channel
        price_from_trades = self.price_from_trades
        one = 0  # one-trade messages, counted here rather than per message on self
        books = self.books
        for payload in payloads:
            if books is not None and payload.startswith(BOOK_PREFIX):
                # A book message: envelope and data in one decode, checked by the keeper
                try:
                    book = book_message_decoder.decode(payload)
                except Exception:  # the general path below classifies and counts it
                    pass
                else:
                    mark = len(out)
                    try:
                        books.on_book(book, out)
                    except Exception as exc:  # any (see the module doc)
                        del out[mark:]
                        self._bad("malformed", payload, exc)
                    continue
            if payload.startswith(TRADE_PREFIX):
                try:
                    items = _trade_message_decoder.decode(payload).data
                except Exception:  # DecodeError, ValueError (bad UTF-8), RecursionError, ...
                    pass  # the general path below classifies and counts what is wrong with it
                else:
                    # Each trade is counted only once its message went through whole: a message
                    # that raises half-way (a price that is no number) is taken back out.
                    mark = len(out)
                    try:
                        if len(items) == 1:  # Bybit's usual message: no list to build
                            t = items[0]
                            out.append(
                                Trade(channel, t.s, t.T, t.S, t.p, t.v, t.i, t.L, t.BT, t.RPI,
                                      t.seq)
                            )
                            if price_from_trades:
                                self.prices.update(t.s, float(t.p), t.T, out)
                            one += 1
                        elif items:
                            self._add_trades(items, out)
                    except Exception as exc:  # any (see the module doc)
                        del out[mark:]
                        self._bad("malformed", payload, exc)
                    continue
            reply = self._decode_general(payload, out)
            if reply is not None:
                replies.append(reply)
        self.trades += one
        return replies

    def _decode_general(self, payload: bytes, out: list[Event]) -> Message | None:
        try:
            msg = _message_decoder.decode(payload)
        except Exception as exc:  # RecursionError too (see the module doc)
            self._bad("malformed", payload, exc)
            return None
        topic = msg.topic
        if topic is None:
            if msg.op is None and msg.type != "COMMAND_RESP":  # option acks have no op
                self._bad("unexpected", payload, "neither topic nor op")
                return None
            return msg
        kind, _, rest = topic.partition(".")
        mark = len(out)
        try:
            if kind == "publicTrade":
                self._trades(msg, out)
            elif kind == "kline":
                self._klines(rest, msg, out)
            elif kind == "tickers":
                self._ticker(rest, msg, out)
            elif kind == "allLiquidation" and self.liquidations is not None:
                self.liquidations.add(msg.data, out)
            elif kind == "orderbook" and self.books is not None:
                self.books.decode(rest, msg.type, msg.data, msg.ts, msg.cts, out)
            else:
                self._bad("unknown_topic", payload, f"topic {topic!r}")
        except Exception as exc:  # any (see the module doc)
            del out[mark:]  # what the message added before it failed
            self._bad("malformed", payload, exc)
        return None

    def _trades(self, msg: Message, out: list[Event]) -> None:
        items = _trades_decoder.decode(msg.data)
        if items:
            self._add_trades(items, out)

    def _add_trades(self, items: list[TradeItem], out: list[Event]) -> None:
        """Append one message's trades (``items`` not empty) to ``out`` and count them."""
        channel = self.channel
        out += [
            Trade(channel, t.s, t.T, t.S, t.p, t.v, t.i, t.L, t.BT, t.RPI, t.seq) for t in items
        ]
        if self.price_from_trades:
            last = items[-1]
            self.prices.update(last.s, float(last.p), last.T, out)
        self.trades += len(items)  # last: a message that raised above is not counted

    def _klines(self, rest: str, msg: Message, out: list[Event]) -> None:
        code, _, symbol = rest.partition(".")
        interval = KLINE_INTERVAL_MS.get(code)
        if interval is None or not symbol:
            raise ValueError(f"bad kline topic {msg.topic!r}")
        channel = self.channel
        for k in _klines_decoder.decode(msg.data):
            out.append(
                Kline(
                    channel,
                    symbol,
                    interval,
                    k.start,
                    float(k.open),
                    float(k.high),
                    float(k.low),
                    float(k.close),
                    float(k.volume),
                    None,
                    k.confirm,
                    float(k.turnover) if k.turnover else None,
                )
            )

    def _ticker(self, symbol: str, msg: Message, out: list[Event]) -> None:
        data = _ticker_decoder.decode(msg.data)
        if not symbol:
            raise ValueError("tickers topic without a symbol")
        if not self.book.apply(symbol, msg.type, data, msg.ts, out):
            self.metrics.inc("ticker_delta_before_snapshot")
            self.log.warning(
                "ticker_delta_before_snapshot",
                "%s: tickers delta for %s before any snapshot, dropped",
                self.channel,
                symbol,
            )

    def _bad(self, key: str, payload: bytes, why: object) -> None:
        self.metrics.inc(key)
        self.log.warning(key, "%s message (%s): %.200r", key, why, bytes(payload))
