"""Helpers of the fault suite: pipeline TOML, klines computed from the fake's own history,
and event-driven waits on pipeline metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import trio
from pipelines import KLINES_1M_WAITER, bybit_source, collect_sink

from streamer._events import Event, Kline, Trade
from streamer._runtime import Pipeline

MINUTE_MS = 60_000

def bybit_klines_toml(fake: Any, symbols: Iterable[str], source_extra: str = "") -> str:
    """bybit.linear -> klines.from_trades (waiter mode, 1m) -> "klines"; bybit -> "trades"."""
    return (bybit_source(fake, symbols, extra=source_extra) + KLINES_1M_WAITER
            + collect_sink("klines", ["agg"]) + collect_sink("trades", ["bybit"]))


def expected_klines(history: Iterable[Mapping[str, Any]], interval_ms: int = MINUTE_MS
                    ) -> dict[int, tuple[float, float, float, float, float, int]]:
    """OHLCV + trade count per candle start, from trades in history (= arrival) order.

    Open is the first trade with the smallest ``T``, close the last with the largest (the
    aggregator orders by trade time, ties by arrival); volume is the exact decimal sum, as
    the float nearest it (what the aggregator emits), so the floats compare exactly.
    """
    out: dict[int, list[Any]] = {}
    for t in history:
        ts, price, size = int(t["T"]), float(t["p"]), Decimal(t["v"])
        start = ts - ts % interval_ms
        c = out.get(start)
        if c is None:
            out[start] = [price, price, price, price, size, 1, ts, ts]
            continue
        if ts < c[6]:
            c[0], c[6] = price, ts
        if ts >= c[7]:
            c[3], c[7] = price, ts
        c[1] = max(c[1], price)
        c[2] = min(c[2], price)
        c[4] += size
        c[5] += 1
    return {s: (c[0], c[1], c[2], c[3], float(c[4]), c[5]) for s, c in out.items()}


def closed_klines(events: Iterable[Event], symbol: str, interval_ms: int = MINUTE_MS
                  ) -> list[Kline]:
    return [e for e in events if isinstance(e, Kline) and e.closed and e.symbol == symbol
            and e.interval == interval_ms]


def kline_tuple(k: Kline) -> tuple[float, float, float, float, float, int]:
    assert k.trade_count is not None
    return (k.open, k.high, k.low, k.close, k.volume, k.trade_count)


def trade_ids(events: Iterable[Event], symbol: str) -> list[str]:
    return [e.trade_id for e in events if isinstance(e, Trade) and e.symbol == symbol]


async def wait_metric(pipeline: Pipeline, node: str, key: str, at_least: int,
                      poll: float = 0.01) -> int:
    """Wait until ``pipeline.metrics()[node][key] >= at_least`` (metrics have no event to
    wait on; under a MockClock the poll sleeps cost no real time)."""
    while (value := pipeline.metrics()[node].get(key, 0)) < at_least:
        await trio.sleep(poll)
    return value
