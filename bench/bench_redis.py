"""Events/s into Redis through the ``redis`` and ``storage`` sinks.

Starts its own redis-server (no persistence) on a free loopback port and, for batches of
1, 10, 100 and 1000 events, measures two things per sink:

- ``per-batch``: the producer waits until each batch is written before sending the next, so
  every batch costs one flush (one worker-thread hop + one pipeline): the figure to compare
  with docs/background.md, "Redis from trio".
- ``flat out``: the producer never waits for Redis; the sink drains whatever is queued into
  one pipeline per flush (what a busy pipeline does).

Sinks: ``redis`` (PUBLISH to ``{main_key}``), ``redis+stream`` (PUBLISH + XADD, one channel
per symbol so every event is its own envelope: the worst case), ``storage`` (tickers of 50
symbols: HSET tickers + HSET price, coalesced per flush).

    .venv/bin/python bench/bench_redis.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from redis_server import RedisServer

from streamer import Context, Event, Inbox, Ticker, Trade
from streamer._metrics import Metrics
from streamer_redis.sink import RedisSink, RedisSinkConfig
from streamer_redis.storage import StorageConfig, StorageSink

SYMBOLS = [f"SYM{i:02d}USDT" for i in range(50)]
BATCHES = (1, 10, 100, 1000)


def trades(n: int, start: int) -> list[Event]:
    return [Trade(channel="linear", symbol=SYMBOLS[(start + i) % 50], ts=1_700_000_000_000 + i,
                  side="Buy", price="65000.5", size="0.001", trade_id=str(start + i))
            for i in range(n)]


def tickers(n: int, start: int) -> list[Event]:
    return [Ticker(channel="linear", symbol=SYMBOLS[(start + i) % 50], ts=1_700_000_000_000 + i,
                   fields={"symbol": SYMBOLS[(start + i) % 50], "markPrice": 65000.0 + i,
                           "lastPrice": 65000.5, "volume24h": 1234.5, "fundingRate": 0.0001})
            for i in range(n)]


def context() -> Context:
    return Context(name="bench", type="bench", logger=logging.getLogger("bench"),
                   metrics=Metrics())


async def measure(make_sink: Callable[..., Any], make_events: Callable[[int, int], list[Event]],
                  batch: int, total: int, per_batch: bool) -> float:
    # A buffer that holds everything: flat out, the producer outruns Redis and the default
    # bound would drop events (as it should in production) instead of measuring the writes.
    sink = make_sink(max_buffer=total + 1)
    inbox = Inbox("bench", 1000, "block")
    batches = [make_events(batch, i) for i in range(0, total, batch)]
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        start = time.perf_counter()
        written = 0
        for events in batches:
            await inbox.put(events)
            written += len(events)
            if per_batch:
                await sink.writer.wait_written(written)
            else:
                await trio.sleep(0)
        await sink.writer.wait_written(written)
        elapsed = time.perf_counter() - start
        inbox.close()
    return written / elapsed


async def main(quick: bool) -> None:
    with RedisServer() as server:
        def redis_sink(**options: Any) -> RedisSink:
            return RedisSink(RedisSinkConfig(port=server.port, **options), context())

        def stream_sink(**options: Any) -> RedisSink:
            return RedisSink(RedisSinkConfig(port=server.port, stream=True, stream_maxlen=10_000,
                                             channel_template="{main_key}:{symbol}", **options),
                             context())

        def storage_sink(**options: Any) -> StorageSink:
            # flush_interval 0: write as soon as events are queued (no time window), so the
            # figures measure Redis work, not the default 1 s coalescing window.
            return StorageSink(StorageConfig(port=server.port, flush_interval=0.0, **options),
                               context())

        print(f"redis-server on 127.0.0.1:{server.port}; events/s (higher is better)")
        header = " ".join(f"{'batch ' + str(b):>12}" for b in BATCHES)
        print(f"{'sink':<14} {'mode':<10} {header}")
        scale = 0.2 if quick else 1.0
        for name, make_events in (("redis", trades), ("redis+stream", trades),
                                  ("storage", tickers)):
            for per_batch in (True, False):
                row = []
                for batch in BATCHES:
                    batches = {1: 3000, 10: 2000, 100: 1000, 1000: 200}[batch]
                    total = max(batch, int(batch * batches * scale))
                    make: Callable[..., Any] = {"redis": redis_sink, "redis+stream": stream_sink,
                                               "storage": storage_sink}[name]
                    server.client().flushall()
                    rate = await measure(make, make_events, batch, total, per_batch)
                    row.append(f"{rate:>12,.0f}")
                mode = "per-batch" if per_batch else "flat out"
                print(f"{name:<14} {mode:<10} " + " ".join(row), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the events")
    trio.run(main, parser.parse_args().quick)
