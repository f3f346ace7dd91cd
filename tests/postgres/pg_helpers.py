"""Builders and runners shared by the postgres sink tests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from postgres_server import PASSWORD_ENV, PostgresServer

from streamer import Context, Inbox, Kline, Trade
from streamer._metrics import Metrics
from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.sink import PostgresSink

T0 = 1_700_000_040_000  # a minute boundary, epoch ms


def make_context(name: str = "pg") -> Context:
    return Context(name=name, type="postgres", logger=logging.getLogger(f"streamer.sink.{name}"),
                   metrics=Metrics())


def make_sink(server: PostgresServer, schema: str, name: str = "pg",
              **options: Any) -> PostgresSink:
    options.setdefault("reconnect_initial", 0.05)
    options.setdefault("reconnect_max", 0.2)
    options.setdefault("connect_timeout", 2.0)
    config = PostgresSinkConfig(dsn=server.dsn, password_env=PASSWORD_ENV, schema=schema,
                                **options)
    return PostgresSink(config, make_context(name))


@asynccontextmanager
async def running(sink: PostgresSink, *, queue_size: int = 100_000) -> AsyncIterator[Inbox]:
    """Run ``sink`` for the body; on exit close its inbox and wait until it has returned."""
    inbox = Inbox("test", queue_size, "block")
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        yield inbox
        inbox.close()


async def wait_until(predicate: Callable[[], bool], step: float = 0.02) -> None:
    """Poll ``predicate`` (the writer's thread reports back asynchronously); bounded by the
    caller's ``fail_after``."""
    while not predicate():
        await trio.sleep(step)


def trade(i: int, symbol: str = "BTCUSDT", channel: str = "linear") -> Trade:
    return Trade(channel=channel, symbol=symbol, ts=T0 + i, side="Buy" if i % 2 else "Sell",
                 price=f"{100 + i}.5", size="0.001", trade_id=f"t{i}")


def kline(symbol: str, start: int, close: float = 1.5, *, closed: bool = True,
          partial: bool = False) -> Kline:
    return Kline(channel="linear", symbol=symbol, interval=60_000, timestamp=start, open=1.0,
                 high=2.0, low=0.5, close=close, volume=10.0, trade_count=3, closed=closed,
                 partial=partial)


def trade_ids(server: PostgresServer, schema: str, order: str = "trade_id") -> list[str]:
    with server.connect() as conn:
        query = f"SELECT trade_id FROM {schema}.trades ORDER BY {order}"
        return [r[0] for r in conn.execute(query)]
