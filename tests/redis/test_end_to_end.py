"""Issue 6, done-when: a streamer.toml with bybit.linear + klines.from_trades + redis + storage,
run against the fake Bybit and a real redis-server, fills the documented keys and channels."""

from __future__ import annotations

import msgspec
import trio
from bybit_simulator import fake_bybit  # noqa: F401  (fixture)
from pipelines import bybit_source, klines_partial

from streamer import clock
from streamer.testing import running_pipeline

M = 60_000

SINKS = """
[[sinks]]
name = "pubsub"
type = "redis"
inputs = ["bybit", "klines"]
port = {port}
stream = true
channel_template = "{{main_key}}:{{channel}}:{{data_type}}"

[[sinks]]
name = "storage"
type = "storage"
inputs = ["bybit", "klines"]
port = {port}
intervals = ["1m"]
history = 5
flush_interval = 0.2
"""


async def test_bybit_to_redis_and_storage(fake_bybit, plugin_manager, redis_server,  # noqa: F811
                                          redis_client):
    fake = fake_bybit
    pubsub = redis_server.client().pubsub()
    pubsub.psubscribe("bybit-streamer:*")
    assert pubsub.get_message(timeout=5.0) is not None  # psubscribe confirmation
    toml = (bybit_source(fake, ["BTCUSDT", "ETHUSDT"], streams=["trades", "tickers"])
            + klines_partial() + SINKS.format(port=redis_server.port))
    m0 = clock.now_ms() // M * M - 10 * M  # minutes that are over: klines close at once
    with trio.fail_after(30):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT", "tickers.BTCUSDT"])
            fake.set_ticker("linear", "BTCUSDT", markPrice="65000.10", lastPrice="65001")
            for symbol in ("BTCUSDT", "ETHUSDT"):
                for offset in (0, 30_000, M + 5, 2 * M + 1, 4 * M + 500):
                    fake.trade("linear", symbol, ts=m0 + offset, count=2)
            storage = pipeline.node("storage")
            history_key = "bybit-streamer:history:linear:1m:{}"
            while not (redis_client.llen(history_key.format("BTCUSDT")) == 4
                       and redis_client.llen(history_key.format("ETHUSDT")) == 4
                       and redis_client.hexists("bybit-streamer:price:linear", "BTCUSDT")):
                await trio.sleep(0.05)
        metrics = pipeline.metrics()
    assert metrics["storage"].get("buffer_dropped_events", 0) == 0

    assert redis_client.hget("bybit-streamer:price:linear", "BTCUSDT") == b"65000.1"
    snapshot = msgspec.json.decode(redis_client.hget("bybit-streamer:tickers:linear", "BTCUSDT"))
    assert snapshot["symbol"] == "BTCUSDT" and snapshot["markPrice"] == 65000.1
    last_closed = msgspec.json.decode(redis_client.get("bybit-streamer:last-closed:linear:1m"))
    assert {k["symbol"] for k in last_closed} == {"BTCUSDT", "ETHUSDT"}
    assert all(k["closed"] and k["interval"] == M for k in last_closed)
    history = redis_client.lrange(history_key.format("BTCUSDT"), 0, -1)
    assert [msgspec.json.decode(h)["timestamp"] for h in history] == [
        m0, m0 + M, m0 + 2 * M, m0 + 3 * M  # the last one: a gap filled by the transform
    ]
    assert storage.cleaned_keys == 0

    trades = redis_client.xrange("bybit-streamer:stream:linear:trades")
    traded = [t for e in trades for t in msgspec.json.decode(e[1][b"data"])["data"]]
    assert len(traded) == 20
    klines = redis_client.xrange("bybit-streamer:stream:linear:klines")
    assert klines, "closed klines were appended to the klines stream"

    def channels() -> set[bytes]:
        seen = set()
        while (message := pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)):
            seen.add(message["channel"])
        return seen

    assert await trio.to_thread.run_sync(channels) >= {
        b"bybit-streamer:linear:trades", b"bybit-streamer:linear:klines",
        b"bybit-streamer:linear:ticker",
    }
