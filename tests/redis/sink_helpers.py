"""Builders and runners shared by the redis and storage sink tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from streamer import Context, Inbox, Kline, Price, Ticker, Trade
from streamer._metrics import Metrics


def make_context(name: str = "sink") -> Context:
    return Context(name=name, type="test", logger=logging.getLogger(f"streamer.sink.{name}"),
                   metrics=Metrics())


@asynccontextmanager
async def running(sink: Any, *, queue_size: int = 10_000,
                  overflow: Any = "block") -> AsyncIterator[Inbox]:
    """Run ``sink`` for the body; on exit close its inbox and wait until it has flushed."""
    inbox = Inbox("test", queue_size, overflow)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        yield inbox
        inbox.close()


async def wait_until(predicate: Callable[[], bool], step: float = 0.01) -> None:
    """Poll ``predicate`` (the writer thread reports back asynchronously); bounded by the
    caller's ``fail_after``."""
    while not predicate():
        await trio.sleep(step)


def buffered(sink: Any) -> int:
    """The sink's ``buffered_events`` gauge: the events its writer holds now."""
    values = [s.value for s in sink.context.metrics.samples() if s.name == "buffered_events"]
    assert len(values) == 1, values
    return int(values[0])


T0 = 1_700_000_040_000  # a minute boundary, epoch ms


def trade(i: int, symbol: str = "BTCUSDT", channel: str = "linear") -> Trade:
    return Trade(channel=channel, symbol=symbol, ts=T0 + i, side="Buy", price=f"{100 + i}.5",
                 size="0.01", trade_id=str(i))


def ticker(symbol: str, channel: str = "linear", ts: int = T0, **fields: Any) -> Ticker:
    return Ticker(channel=channel, symbol=symbol, ts=ts, fields={"symbol": symbol, **fields})


def price(symbol: str, value: float, channel: str = "linear", ts: int = T0) -> Price:
    return Price(channel=channel, symbol=symbol, price=value, ts=ts)


def kline(symbol: str, start: int, interval: int = 60_000, close: float = 1.5,
          channel: str = "linear", closed: bool = True) -> Kline:
    return Kline(channel=channel, symbol=symbol, interval=interval, timestamp=start, open=1.0,
                 high=2.0, low=0.5, close=close, volume=10.0, trade_count=3, closed=closed)
