"""The ``storage`` sink: keeps the current state of the market in Redis keys.

Writes go through streamer-redis's :class:`~streamer_redis.BufferedWriter` (one pipeline per
flush in a worker thread, bounded buffer, reconnect with backoff). A flush happens at
``flush_size`` events or when the oldest waited ``flush_interval``, and at shutdown. Within a
flush the latest ticker and price per symbol win, so the Redis work grows with the number of
symbols, not with the message rate. Key layout: :mod:`streamer_redis.storage_keys`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import attrs
import msgspec
import redis
import redis.client
import trio

from streamer import Context, Event, Inbox, Kline, Price, Ticker
from streamer.intervals import INTERVALS, parse_interval
from streamer.validators import at_least, channel_problem
from streamer_redis import BufferedWriter, RedisConnectionConfig
from streamer_redis.connection import flush_interval_option, flush_size_option
from streamer_redis.storage_keys import StorageKeys, key_label, last_closed_ttl_ms

_encoder = msgspec.json.Encoder()
#: Keys per DEL when cleaning history keys found by SCAN.
_DELETE_BATCH = 500


def format_price(value: Any) -> str | None:
    """A price as stored: the shortest decimal that reads back as the same float, without an
    exponent (``65000.1``, ``0.00001234``, ``3.0``); None for a missing or non-numeric value.
    """
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return format(Decimal(repr(number)), "f")


#: Ticker field used as the price of a channel that ``price_fields`` does not name: the
#: Bybit source's channels, as the older streamer stored them.
DEFAULT_PRICE_FIELDS = {"linear": "markPrice", "spot": "lastPrice"}


def _channels(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError("channels must list at least one channel, e.g. ['linear', 'spot']")
    for channel in value:
        problem = channel_problem(channel)
        if problem is not None:
            raise ValueError(f"channels: {problem}")


def _price_fields(
    config: StorageConfig, _: attrs.Attribute[dict[str, str]], value: dict[str, str]
) -> None:
    """Names are channel names; the older per-channel options do not contradict it; with
    ``price_from = "ticker"`` every stored channel has a price field."""
    for channel, field in value.items():
        problem = channel_problem(channel)
        if problem is not None:
            raise ValueError(f"price_fields: {problem}")
        if not field:
            raise ValueError(f"price_fields.{channel}: expected a ticker field name, got ''")
    for channel, old in (("linear", config.linear_price_field),
                         ("spot", config.spot_price_field)):
        if old is not None and value.get(channel, old) != old:
            raise ValueError(f"{channel}_price_field ({old!r}) and price_fields.{channel} "
                             f"({value[channel]!r}) disagree: keep price_fields.{channel}")
    if config.price_from == "ticker":
        fields = config.price_field_of()
        missing = [c for c in config.channels if channel_problem(c) is None and c not in fields]
        if missing:
            raise ValueError(
                f"price_fields names no ticker field for channel {missing[0]!r}: add "
                f'price_fields.{missing[0]} = "<ticker field>", or set price_from = "price"')


def _intervals(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError("intervals must list at least one interval, e.g. ['1m']")
    for label in value:
        parse_interval(label)


@attrs.define
class StorageConfig(RedisConnectionConfig):
    #: Channels stored and cleaned; events of other channels are ignored (and counted).
    #: Names are the sources' channel names (``streamer.validators.CHANNEL_NAME``).
    channels: list[str] = attrs.field(
        factory=lambda: ["linear", "spot"], validator=_channels
    )
    #: Kline intervals stored and cleaned, as labels ("1m", "1h", "1D", ...); closed klines of
    #: other intervals are ignored (and counted).
    intervals: list[str] = attrs.field(
        factory=lambda: [label for label in INTERVALS if label != "1M"], validator=_intervals
    )
    #: Keep the last N closed klines per symbol and interval in a list (0: no history).
    history: int = attrs.field(default=0, validator=at_least(0))
    #: Where the price hash comes from: a field of the ticker events ("ticker") or the
    #: pipeline's price events ("price").
    price_from: Literal["ticker", "price"] = "ticker"
    #: The older options: the ticker field used as the price of channel "linear" / "spot"
    #: with price_from = "ticker" (the same as price_fields.linear / price_fields.spot).
    linear_price_field: str | None = None
    spot_price_field: str | None = None
    #: Ticker field used as the price with price_from = "ticker", per channel, over
    #: :data:`DEFAULT_PRICE_FIELDS`; every stored channel needs one.
    price_fields: dict[str, str] = attrs.field(factory=dict, validator=_price_fields)
    #: Interval labels in the keys: "lower" (1m, 1h, 1d, 1w: the older streamer's keys) or
    #: "config" (as written in intervals: 1D, 1W).
    key_labels: Literal["lower", "config"] = "lower"
    #: Delete this sink's documented keys at start (never anything else).
    clean_on_start: bool = True
    flush_size: int = flush_size_option(100)
    flush_interval: float = flush_interval_option(1.0)

    def price_field_of(self) -> dict[str, str]:
        """channel -> the ticker field its price comes from (price_from = "ticker")."""
        fields = dict(DEFAULT_PRICE_FIELDS)
        if self.linear_price_field is not None:
            fields["linear"] = self.linear_price_field
        if self.spot_price_field is not None:
            fields["spot"] = self.spot_price_field
        fields.update(self.price_fields)
        return fields

    def interval_labels(self) -> dict[int, str]:
        """ms -> label of the configured intervals, as keys carry it."""
        return {parse_interval(label): key_label(label, self.key_labels)
                for label in self.intervals}


class StorageSink:
    def __init__(self, config: StorageConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.keys = StorageKeys(config.main_key)
        self._channels = frozenset(config.channels)
        self._labels = config.interval_labels()
        self._price_fields = config.price_field_of()
        #: (channel, interval ms) -> symbol -> its last closed kline: last-closed holds all.
        self._last_closed: dict[tuple[str, int], dict[str, Kline]] = {}
        self._warned_ignored: set[str] = set()
        #: Keys deleted by the startup clean (for the log and the tests).
        self.cleaned_keys = 0
        self.writer = BufferedWriter(
            config, context, build=self.build,
            flush_size=config.flush_size, flush_interval=config.flush_interval,
            setup=self.clean if config.clean_on_start else None,
        )

    # -- startup clean (worker thread) ---------------------------------------------------------

    def documented_keys(self) -> list[str]:
        """The exact keys cleaned at start, history keys aside (those are found by SCAN)."""
        keys = []
        for channel in self.config.channels:
            keys += [self.keys.tickers(channel), self.keys.price(channel)]
            keys += [self.keys.last_closed(channel, label) for label in self._labels.values()]
        return keys

    def clean(self, client: redis.Redis) -> None:
        """DEL this sink's keys for the configured channels and intervals. History keys are
        found with SCAN MATCH ``{main_key}:history:{channel}:{interval}:*`` (main_key escaped),
        which cannot match another application's keys; never a bare ``{main_key}*``."""
        deleted = int(client.delete(*self.documented_keys()))
        for channel in self.config.channels:
            for label in self._labels.values():
                pattern = self.keys.history_pattern(channel, label)
                batch: list[bytes] = []
                for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= _DELETE_BATCH:
                        deleted += int(client.delete(*batch))
                        batch.clear()
                if batch:
                    deleted += int(client.delete(*batch))
        self.cleaned_keys = deleted
        self.context.logger.info("startup clean: deleted %d key(s) under %s:", deleted,
                                 self.config.main_key)

    # -- one flush (trio thread, no I/O) -----------------------------------------------------

    def _ignore(self, what: str) -> None:
        self.context.metrics.inc("ignored_events")
        if what not in self._warned_ignored:
            self._warned_ignored.add(what)
            self.context.logger.warning("storage sink ignores %s (not in its configuration)",
                                        what)

    def build(self, pipe: redis.client.Pipeline, events: list[Event]) -> None:
        config = self.config
        keys = self.keys
        channels = self._channels
        labels = self._labels
        price_from_ticker = config.price_from == "ticker"
        tickers: dict[str, dict[str, Ticker]] = {}
        prices: dict[str, dict[str, Any]] = {}
        touched: set[tuple[str, int]] = set()
        history: dict[str, list[Kline]] = {}
        for event in events:
            channel = event.channel
            if channel not in channels:
                self._ignore(f"channel {channel!r}")
                continue
            kind = event.__class__
            if kind is Ticker:
                tickers.setdefault(channel, {})[event.symbol] = event  # type: ignore[assignment]
                if price_from_ticker:
                    value = event.fields.get(self._price_fields[channel])  # type: ignore[union-attr]
                    if value is not None and value != "":
                        prices.setdefault(channel, {})[event.symbol] = value
            elif kind is Price:
                if not price_from_ticker:
                    prices.setdefault(channel, {})[event.symbol] = event.price  # type: ignore[union-attr]
            elif kind is Kline:
                kline: Kline = event  # type: ignore[assignment]
                if not kline.closed:
                    continue
                label = labels.get(kline.interval)
                if label is None:
                    self._ignore(f"klines of interval {kline.interval} ms")
                    continue
                latest = self._last_closed.setdefault((channel, kline.interval), {})
                previous = latest.get(kline.symbol)
                if previous is None or kline.timestamp >= previous.timestamp:
                    latest[kline.symbol] = kline
                touched.add((channel, kline.interval))
                if config.history:
                    history.setdefault(keys.history(channel, label, kline.symbol), []).append(kline)

        for channel, by_symbol in tickers.items():
            pipe.hset(keys.tickers(channel), mapping={
                symbol: _encoder.encode(t.to_wire()) for symbol, t in by_symbol.items()
            })
        for channel, raw_prices in prices.items():
            mapping: dict[Any, Any] = {}
            for symbol, raw in raw_prices.items():
                text = format_price(raw)
                if text is None:
                    self.context.metrics.inc("bad_prices")
                else:
                    mapping[symbol] = text
            if mapping:
                pipe.hset(keys.price(channel), mapping=mapping)
        for channel, interval in touched:
            klines = self._last_closed[(channel, interval)]
            payload = _encoder.encode([klines[s].to_wire() for s in sorted(klines)])
            pipe.set(keys.last_closed(channel, labels[interval]), payload,
                     px=last_closed_ttl_ms(interval))
        for key, klines_of_key in history.items():
            pipe.rpush(key, *[_encoder.encode(k.to_wire()) for k in klines_of_key])
            pipe.ltrim(key, -config.history, -1)

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.writer.serve(inbox, task_status=task_status)
