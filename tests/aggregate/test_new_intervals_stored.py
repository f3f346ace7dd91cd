"""New intervals downstream: klines.from_trades builds 500ms and 10s klines, the storage sink
keeps them in a real redis-server under their labels, with a TTL that outlives its flushes."""

from __future__ import annotations

import msgspec
import trio

from aggregate.helpers import trade
from streamer import clock
from streamer.intervals import DAY_MS, MONTH_MS, candle_start
from streamer.testing import running_pipeline
from streamer_redis.storage_keys import last_closed_ttl_ms

PIPE = """
[[sources]]
name = "src"
type = "testing.scripted"
end_when_done = false

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["src"]
intervals = ["500ms", "10s"]
first_candle = "partial"

[[sinks]]
name = "storage"
type = "storage"
inputs = ["klines"]
port = {port}
intervals = ["500ms", "10s"]
flush_interval = 0.05
"""


async def test_sub_second_klines_reach_storage_under_their_label(redis_server, plugin_manager):
    client = redis_server.client()
    with trio.fail_after(20):
        async with running_pipeline(PIPE.format(port=redis_server.port),
                                    plugin_manager) as pipeline:
            start = candle_start(clock.now_ms(), 500)
            pipeline.node("src").push([trade(start + 100, 10), trade(start + 101, 11)])
            key = "bybit-streamer:last-closed:linear:500ms"
            while client.get(key) is None:
                await trio.sleep(0.02)
            ttl = client.pttl(key)
    (kline,) = msgspec.json.decode(client.get(key))
    assert (kline["interval"], kline["timestamp"], kline["close"]) == (500, start, 11.0)
    assert 1_000 < ttl <= 2_000  # outlives the sink's flushes, not just half a second


def test_last_closed_ttl_covers_the_longest_month():
    assert last_closed_ttl_ms(60_000) == 60_000
    assert last_closed_ttl_ms(500) == 2_000
    assert last_closed_ttl_ms(MONTH_MS) == 31 * DAY_MS
    assert last_closed_ttl_ms(2 * MONTH_MS) == 62 * DAY_MS
