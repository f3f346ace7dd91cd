"""The ``redis`` sink: PUBLISH every batch in the wire format, optionally XADD to streams.

By default every envelope goes to the one pub/sub channel ``{main_key}``, as the older Bybit
streamer did, so its subscribers keep working. ``channel_template`` splits by ``{channel}``,
``{data_type}`` and ``{symbol}`` (one envelope per symbol then). With ``stream = true`` each
envelope is also appended (field ``data``) to a Redis Stream per channel and data type, trimmed
to about ``stream_maxlen`` entries, so a consumer that was away can catch up with a consumer
group. Each envelope is encoded once and the same bytes go to PUBLISH and XADD.
"""

from __future__ import annotations

import string
from typing import Any

import attrs
import redis.client
import trio

from streamer import Context, Event, Inbox
from streamer.validators import Validator, at_least
from streamer.wire import render_encoded
from streamer_redis.connection import (
    RedisConnectionConfig,
    flush_interval_option,
    flush_size_option,
)
from streamer_redis.writer import BufferedWriter

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


class RedisSink:
    def __init__(self, config: RedisSinkConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self._per_symbol = "{symbol}" in config.channel_template
        self._channel_names: dict[tuple[str, str, str], str] = {}
        self._stream_names: dict[tuple[str, str], str] = {}
        self.writer = BufferedWriter(
            config, context, build=self.build,
            flush_size=config.flush_size, flush_interval=config.flush_interval,
        )

    def _channel_name(self, channel: str, data_type: str, symbol: str) -> str:
        key = (channel, data_type, symbol)
        name = self._channel_names.get(key)
        if name is None:
            name = self._channel_names[key] = self.config.channel_template.format(
                main_key=self.config.main_key, channel=channel, data_type=data_type,
                symbol=symbol,
            )
        return name

    def _stream_name(self, channel: str, data_type: str) -> str:
        key = (channel, data_type)
        name = self._stream_names.get(key)
        if name is None:
            name = self._stream_names[key] = self.config.stream_template.format(
                main_key=self.config.main_key, channel=channel, data_type=data_type,
            )
        return name

    def _envelopes(self, events: list[Event]) -> list[tuple[str, str, str, bytes]]:
        """(symbol or "", channel, data_type, encoded envelope) in wire format; one per
        symbol when the template says so."""
        if not self._per_symbol:
            return [("", channel, data_type, payload)
                    for channel, data_type, payload in render_encoded(events)]
        by_symbol: dict[str, list[Event]] = {}
        for event in events:
            group = by_symbol.get(event.symbol)
            if group is None:
                group = by_symbol[event.symbol] = []
            group.append(event)
        return [(symbol, channel, data_type, payload)
                for symbol, group in by_symbol.items()
                for channel, data_type, payload in render_encoded(group)]

    def build(self, pipe: redis.client.Pipeline, events: list[Event]) -> None:
        config = self.config
        for symbol, channel, data_type, payload in self._envelopes(events):
            pipe.publish(self._channel_name(channel, data_type, symbol), payload)
            if config.stream:
                pipe.xadd(
                    self._stream_name(channel, data_type), {"data": payload},
                    maxlen=config.stream_maxlen, approximate=True,
                )

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.writer.serve(inbox, task_status=task_status)

