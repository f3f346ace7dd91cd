"""Under trio's MockClock: a first candle waits for its history at most
``backfill_timeout_s``, even when the source's REST endpoint accepts and never answers."""

from __future__ import annotations

import logging

import trio

from aggregate.helpers import trade
from streamer import clock
from streamer._api import Context
from streamer._config import structure_options
from streamer._metrics import Metrics
from streamer.intervals import candle_start
from streamer_aggregate.config import KlineConfig
from streamer_aggregate.transform import KlineTransform
from streamer_bybit.source import BybitLinearConfig, BybitSource

H = 3_600_000


async def _never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


class Recorder:
    def __init__(self) -> None:
        self.batches: list[tuple[int, list]] = []

    async def __call__(self, batch) -> None:
        self.batches.append((clock.now_ms(), list(batch)))


async def sleep_to(ms: int) -> None:
    await trio.sleep_until(clock.trio_time_at(ms / 1000))


async def test_a_first_candle_never_waits_past_its_deadline(autojump_clock):
    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(
            lambda task_status: trio.serve_tcp(_never_answer, 0, host="127.0.0.1",
                                               task_status=task_status))
        port = listener.socket.getsockname()[1]
        source_ctx = Context(name="bybit", type="bybit.linear",
                             logger=logging.getLogger("t.src"), metrics=Metrics())
        source = BybitSource(BybitLinearConfig(symbols=["BTCUSDT"], url="ws://127.0.0.1:1",
                                               rest_url=f"http://127.0.0.1:{port}"),
                             source_ctx, "linear")
        config = structure_options(KlineConfig, {"intervals": ["10s", "1h"],
                                                 "updates": "throttled",
                                                 "update_interval_ms": 500,
                                                 "backfill_timeout_s": 3})
        ctx = Context(name="k", type="klines.from_trades", logger=logging.getLogger("t.dl"),
                      metrics=Metrics(), inputs=("bybit",))
        ctx.history.add("bybit", source.history)
        tr = KlineTransform(config, ctx)
        rec = Recorder()
        await nursery.start(tr.run, rec)
        t0 = candle_start(clock.now_ms(), H) + H + 1_234_567  # well inside the next hour
        await sleep_to(t0)
        assert tr.process([trade(t0, 10)]) == []
        await sleep_to(t0 + 2_900)
        # both candles still wait (for 1m candles and recent trades): not shown yet
        assert tr.aggregator.pending_backfills() == 2
        assert not [k for _, batch in rec.batches for k in batch if k.interval == H]
        await sleep_to(t0 + 3_600)
        assert tr.aggregator.pending_backfills() == 0
        assert ctx.metrics["backfill_deadline"] == 2
        shown = [(t, k) for t, batch in rec.batches for k in batch if k.interval == H]
        assert shown and all(k.partial and not k.closed for _, k in shown)
        assert t0 + 3_000 <= shown[0][0] <= t0 + 3_500  # the next throttled flush
        nursery.cancel_scope.cancel()
