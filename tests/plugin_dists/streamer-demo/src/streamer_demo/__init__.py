"""A third-party plugin: source ``demo.ticks`` emits one trade per ``interval`` seconds."""

from __future__ import annotations

import attrs
import trio

from streamer import Context, Emit, Trade, hookimpl
from streamer.clock import now_ms


@attrs.define
class TicksConfig:
    symbol: str = "DEMOUSDT"
    interval: float = 0.01
    count: int = 1_000_000


class TicksSource:
    def __init__(self, config: TicksConfig, context: Context) -> None:
        self.config = config

    async def run(self, emit: Emit, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        for i in range(self.config.count):
            await emit([Trade("linear", self.config.symbol, now_ms(), "Buy", str(100 + i),
                              "1", str(i))])
            await trio.sleep(self.config.interval)
        await trio.sleep_forever()


@hookimpl
def streamer_register_sources(register) -> None:
    register("demo.ticks", TicksConfig, TicksSource)
