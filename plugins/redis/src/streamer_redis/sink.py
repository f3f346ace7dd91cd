"""The ``redis`` sink: PUBLISH every batch in the wire format, optionally XADD to streams.

By default every envelope goes to the one pub/sub channel ``{main_key}``, as the older Bybit
streamer did, so its subscribers keep working. ``channel_template`` splits by ``{channel}``,
``{data_type}`` and ``{symbol}`` (one envelope per symbol then). With ``stream = true`` each
envelope is also appended (field ``data``) to a Redis Stream per channel and data type, trimmed
to about ``stream_maxlen`` entries, so a consumer that was away can catch up with a consumer
group. Each envelope is encoded once and the same bytes go to PUBLISH and XADD.
"""

from __future__ import annotations

import redis.client
import trio

from streamer import Context, Event, Inbox
from streamer.wire import render_encoded
from streamer_redis.config import RedisSinkConfig
from streamer_redis.writer import BufferedWriter


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

