"""Fault 5: redis-server is killed (SIGKILL) and restarted mid-run under a real pipeline:
fake Bybit -> bybit.linear (trades, tickers) -> redis (pub/sub + streams), storage, and a
testing.collect sink.

While Redis is down the redis and storage sinks buffer; the collector keeps receiving every
trade (a Redis outage never stalls the source or another sink). The restarted server is empty
(no persistence), so what it holds afterwards is exactly what was buffered during the outage
and written after it: every trade made while Redis was down, in order, once; the latest price
and ticker of every symbol. Real time (the Redis writes run in a worker thread, which a
MockClock's autojump cannot see), bounded by generous deadlines.
"""

from __future__ import annotations

import msgspec
import trio
import trio.to_thread

from faults.helpers import toml_list, trade_ids
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
STREAM_KEY = "bybit-streamer:stream:linear:trades"

PIPELINE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = {symbols}
streams = ["trades", "tickers"]
url = "{ws}"
rest_url = "{rest}"

[[sinks]]
name = "pub"
type = "redis"
inputs = ["bybit"]
port = {port}
stream = true
reconnect_initial = 0.05
reconnect_max = 0.3

[[sinks]]
name = "storage"
type = "storage"
inputs = ["bybit"]
port = {port}
intervals = ["1m"]
flush_interval = 0.05
reconnect_initial = 0.05
reconnect_max = 0.3

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["bybit"]
"""


async def wait_until(predicate, poll: float = 0.02) -> None:
    while not predicate():
        await trio.sleep(poll)


def stream_trade_ids(client) -> list[str]:
    ids = []
    for _entry_id, fields in client.xrange(STREAM_KEY):
        envelope = msgspec.json.decode(fields[b"data"])
        ids.extend(item["i"] for item in envelope["data"])
    return ids


async def test_redis_killed_and_restarted_buffered_writes_arrive(
    fake_bybit, plugin_manager, redis_server, redis_client
):
    fake = fake_bybit
    toml = PIPELINE.format(symbols=toml_list(SYMBOLS), ws=fake.ws_url("linear"),
                           rest=fake.rest_url, port=redis_server.port)

    def all_trades_in(events) -> bool:
        return all(trade_ids(events, s) == [t["i"] for t in fake.history("linear", s)]
                   for s in SYMBOLS)

    with trio.fail_after(90):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            out = pipeline.node("out")
            await fake.wait_subscribed("linear", [f"publicTrade.{s}" for s in SYMBOLS])
            for s in SYMBOLS:
                fake.trade("linear", s, count=3)
            await out.wait_for(all_trades_in)
            await wait_until(lambda: len(stream_trade_ids(redis_client)) == 3 * len(SYMBOLS))

            await trio.to_thread.run_sync(redis_server.kill)
            outage_start = len(out.events)
            during: list[str] = []
            for round_ in range(20):
                for n, s in enumerate(SYMBOLS):
                    during += [t["i"] for t in fake.trade("linear", s, count=2)]
                    fake.set_ticker("linear", s, markPrice=f"{1000 + 10 * round_ + n}.5")
                # The collector is unaffected: it keeps up while Redis is down.
                await out.wait_for(all_trades_in)
                await trio.sleep(0.02)
            metrics = pipeline.metrics()
            await wait_until(lambda: pipeline.metrics()["pub"].get("write_failures", 0) >= 1
                             and pipeline.metrics()["storage"].get("write_failures", 0) >= 1)
            assert len(out.events) > outage_start

            await trio.to_thread.run_sync(redis_server.restart)
            client = redis_server.client()
            try:
                await wait_until(lambda: stream_trade_ids(client) == during)
                final_prices = {s.encode(): f"{1000 + 10 * 19 + n}.5".encode()
                                for n, s in enumerate(SYMBOLS)}
                await wait_until(
                    lambda: client.hgetall("bybit-streamer:price:linear") == final_prices)
                # After the outage, writes go on as usual.
                after = [t["i"] for s in SYMBOLS for t in fake.trade("linear", s)]
                await wait_until(lambda: stream_trade_ids(client) == during + after)
                tickers = client.hgetall("bybit-streamer:tickers:linear")
            finally:
                client.close()
            metrics = pipeline.metrics()
    assert set(tickers) == {s.encode() for s in SYMBOLS}
    for s in SYMBOLS:
        assert msgspec.json.decode(tickers[s.encode()])["markPrice"] == float(
            final_prices[s.encode()])
    for sink in ("pub", "storage"):
        assert metrics[sink].get("dropped_events", 0) == 0, (sink, metrics[sink])
    # nobody's inbox overflowed: the outage never backed up into the pipeline
    assert not any(m.get("inbox_dropped_batches") for m in metrics.values())
    assert all_trades_in(out.events)
