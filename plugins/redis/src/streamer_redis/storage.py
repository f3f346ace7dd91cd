"""The ``storage`` sink: keeps the current state of the market in Redis keys.

Writes go through streamer-redis's :class:`~streamer_redis.BufferedWriter` (one pipeline per
flush in a worker thread, bounded buffer, reconnect with backoff). A flush happens at
``flush_size`` events or when the oldest waited ``flush_interval``, and at shutdown. Within a
flush the latest ticker and price per symbol win, so the Redis work grows with the number of
symbols, not with the message rate. Key layout: :mod:`streamer_redis.storage_keys`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import redis
import redis.client
import trio

from streamer import Book, Context, Event, Inbox, Kline, Price, Ticker
from streamer_redis.config import StorageConfig
from streamer_redis.storage_books import StorageBooks
from streamer_redis.storage_keys import StorageKeys, last_closed_ttl_ms
from streamer_redis.writer import BufferedWriter

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
        #: The order books (top ``book_depth`` per symbol in ``{main_key}:book:{channel}``).
        self.books = StorageBooks(config.book_depth, context.metrics)
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
            keys += [self.keys.tickers(channel), self.keys.price(channel),
                     self.keys.book(channel)]
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
            elif kind is Book:
                self.books.apply(event)  # type: ignore[arg-type]

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
        self.books.write(pipe, keys.book)
        for key, klines_of_key in history.items():
            pipe.rpush(key, *[_encoder.encode(k.to_wire()) for k in klines_of_key])
            pipe.ltrim(key, -config.history, -1)

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.writer.serve(inbox, task_status=task_status)
