"""The ``redis`` and ``storage`` sinks' options (imported when the plugin registers: attrs
and the core's validators only; redis-py comes with the sinks)."""

from __future__ import annotations

import string
from typing import Any, Literal

import attrs

from streamer.intervals import INTERVALS, parse_interval
from streamer.validators import Validator, at_least, between, channel_problem
from streamer_redis.connection import RedisConnectionConfig
from streamer_redis.storage_keys import key_label


def flush_size_option(default: int) -> Any:
    """The ``flush_size`` option of a sink config (each sink has its own default): write once
    this many events are buffered, at least 1."""
    return attrs.field(default=default, validator=at_least(1))


def flush_interval_option(default: float) -> Any:
    """The ``flush_interval`` option of a sink config: seconds the oldest buffered event waits
    at most, 0 or more (0: write as soon as events arrive)."""
    return attrs.field(default=default, validator=at_least(0))


_CHANNEL_FIELDS = {"main_key", "channel", "data_type", "symbol"}
_STREAM_FIELDS = {"main_key", "channel", "data_type"}


def _check_template(name: str, template: str, allowed: set[str]) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{name} {template!r}: {exc}") from None
    unknown = fields - allowed
    if unknown:
        raise ValueError(
            f"{name} {template!r}: unknown placeholder(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join('{' + f + '}' for f in sorted(allowed))}"
        )
    if not template:
        raise ValueError(f"{name} must not be empty")


def _template(allowed: set[str]) -> Validator:
    def check(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
        _check_template(attribute.name, value, allowed)

    return check


@attrs.define
class RedisSinkConfig(RedisConnectionConfig):
    #: Pub/sub channel of each envelope; placeholders {main_key} {channel} {data_type}
    #: {symbol} ({symbol} publishes one envelope per symbol).
    channel_template: str = attrs.field(default="{main_key}",
                                        validator=_template(_CHANNEL_FIELDS))
    #: Also XADD each envelope to a Redis Stream.
    stream: bool = False
    #: Stream key; placeholders {main_key} {channel} {data_type}.
    stream_template: str = attrs.field(default="{main_key}:stream:{channel}:{data_type}",
                                       validator=_template(_STREAM_FIELDS))
    #: Approximate stream length (XADD MAXLEN ~).
    stream_maxlen: int = attrs.field(default=100_000, validator=at_least(1))
    #: Write once this many events are buffered ...
    flush_size: int = flush_size_option(1000)
    #: ... or the oldest waited this long (s). 0: write as soon as events arrive (events
    #: arriving while a write is in flight go together in the next pipeline). The 10 ms
    #: default bounds the worker-thread hops to ~100/s at light load (at 2,000 msg/s, 0 made
    #: ~700 hops/s of ~3 events each) for at most 10 ms of extra latency.
    flush_interval: float = flush_interval_option(0.01)


#: Ticker field used as the price of a channel that ``price_fields`` does not name: the
#: Bybit source's channels, as the older streamer stored them.
DEFAULT_PRICE_FIELDS = {"linear": "markPrice", "spot": "lastPrice", "inverse": "markPrice",
                        "option": "markPrice"}


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
    #: Levels a side kept of each order book (the "book" events) in {main_key}:book:{channel}.
    book_depth: int = attrs.field(default=20, validator=between(1, 1000))
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
