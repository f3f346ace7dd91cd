"""``klines.passthrough``: Bybit's own kline stream, in the same output as klines.from_trades.

The bybit source already turns Bybit's ``kline.<interval>.<symbol>`` messages into
:class:`streamer.Kline` events (``closed`` = Bybit's ``confirm``, ``trade_count``
``None``: Bybit does not send it). This transform only selects and de-duplicates them:
Bybit may repeat a ``confirm: true`` message, and a consumer must see each closed candle once.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from streamer import Context, Emit, Event, Kline
from streamer_aggregate.config import PassthroughConfig


class KlinePassthrough:
    def __init__(self, config: PassthroughConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self._only_closed = config.updates == "closed"
        self._intervals = config.interval_ms
        #: (channel, symbol, interval) -> open time of the newest closed candle forwarded.
        self._last_closed: dict[tuple[str, str, int], int] = {}

    def process(self, batch: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        last_closed = self._last_closed
        only_closed = self._only_closed
        intervals = self._intervals
        for k in batch:
            if k.__class__ is not Kline:
                continue
            assert isinstance(k, Kline)
            if intervals and k.interval not in intervals:
                continue
            if only_closed and not k.closed:
                continue
            key = (k.channel, k.symbol, k.interval)
            done = last_closed.get(key)
            if done is not None and k.timestamp <= done:
                # A repeated confirm, or an update of a candle already closed.
                self.context.metrics.inc("duplicate_klines")
                continue
            if k.closed:
                last_closed[key] = k.timestamp
            out.append(k)
        return out

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()
