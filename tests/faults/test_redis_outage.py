"""Fault 5: redis-server is killed (SIGKILL) and restarted mid-run under a real pipeline:
fake Bybit -> bybit.linear (trades, tickers) [-> klines.from_trades] -> redis (pub/sub +
streams), storage, and testing.collect sinks.

While Redis is down the redis and storage sinks buffer; the collector keeps receiving every
trade (a Redis outage never stalls the source or another sink). The restarted server is empty
(no persistence), so what it holds afterwards is exactly what was buffered during the outage
and written after it.

- Within the buffer: every trade made while Redis was down, in order, once; the latest price
  and ticker of every symbol (real time, bounded by generous deadlines).
- Longer than the buffer holds, across a kline boundary (MockClock): the newest
  ``max_buffer`` events are kept, the older ones are dropped and counted, exactly; the minute
  closed during the outage reaches the kline history and the closed-kline key.
"""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing
import trio.to_thread
from pipelines import KLINES_1M_WAITER, bybit_source, collect_sink

from faults.helpers import (
    MINUTE_MS,
    closed_klines,
    expected_klines,
    kline_tuple,
    trade_ids,
    wait_metric,
)
from streamer import clock
from streamer._events import Event, Kline, Ticker, Trade
from streamer.testing import running_pipeline

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
STREAM_KEY = "bybit-streamer:stream:linear:trades"

#: After the bybit source (trades and tickers).
SINKS = """
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
    toml = (bybit_source(fake, SYMBOLS, streams=["trades", "tickers"])
            + SINKS.format(port=redis_server.port) + collect_sink())

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
            during_of: dict[str, list[str]] = {}
            for round_ in range(20):
                for n, s in enumerate(SYMBOLS):
                    made = [t["i"] for t in fake.trade("linear", s, count=2)]
                    during += made
                    during_of.setdefault(s, []).extend(made)
                    fake.set_ticker("linear", s, markPrice=f"{1000 + 10 * round_ + n}.5")
                # The collector is unaffected: it keeps up while Redis is down.
                await out.wait_for(all_trades_in)
                await trio.sleep(0.02)
            metrics = pipeline.metrics()
            await wait_until(lambda: pipeline.metrics()["pub"].get("write_failures", 0) >= 1
                             and pipeline.metrics()["storage"].get("write_failures", 0) >= 1)
            # The collector took exactly the trades made during the outage, per symbol in order.
            for s in SYMBOLS:
                assert trade_ids(out.events[outage_start:], s) == during_of[s], s

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
        assert metrics[sink].get("buffer_dropped_events", 0) == 0, (sink, metrics[sink])
    assert pipeline.losses() == {}
    # nobody's inbox overflowed: the outage never backed up into the pipeline
    assert not any(m.get("inbox_dropped_batches") for m in metrics.values())
    assert all_trades_in(out.events)


# ---------------------------------------------------------------- longer than the buffer
MAX_BUFFER = 40
# (reconnect_max = 5 s: virtual seconds are cheap, each failed attempt costs a little real
# time)
TICKERS_STREAM_KEY = "bybit-streamer:stream:linear:ticker"

#: After the bybit source (trades and tickers) and KLINES_1M_WAITER.
BOUNDARY_SINKS = """
[[sinks]]
name = "pub"
type = "redis"
inputs = ["bybit"]
port = {port}
stream = true
max_buffer = {max_buffer}
reconnect_initial = 0.05
reconnect_max = 5.0

[[sinks]]
name = "storage"
type = "storage"
inputs = ["bybit", "agg"]
port = {port}
intervals = ["1m"]
history = 10
max_buffer = {max_buffer}
flush_interval = 0.05
reconnect_initial = 0.05
reconnect_max = 5.0

# The same inputs as the two Redis sinks: what each of them was handed, in order.
[[sinks]]
name = "pub_input"
type = "testing.collect"
inputs = ["bybit"]

[[sinks]]
name = "storage_input"
type = "testing.collect"
inputs = ["bybit", "agg"]
"""


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    """Virtual time that jumps once every task has been idle for 20 ms of real time: the
    Redis writes run in a worker thread in real time, which an instant jump would not wait
    for."""
    return trio.testing.MockClock(autojump_threshold=0.02)


async def small_jumps() -> None:
    """A deadline every half virtual second: while a worker thread keeps every task waiting
    for more than the autojump threshold (a Redis write on a busy machine), the clock jumps
    half a second, never straight to the next far deadline (the test's own fail_after)."""
    while True:
        await trio.sleep(0.5)


async def sleep_until_ms(epoch_ms: float) -> None:
    await trio.sleep_until(clock.trio_time_at(epoch_ms / 1000))


def stream_items(client, key: str) -> list[dict]:
    items = []
    for _entry_id, fields in client.xrange(key):
        items.extend(msgspec.json.decode(fields[b"data"])["data"])
    return items


def of_type(events: list[Event], kind: type) -> list:
    return [e for e in events if type(e) is kind]


async def test_outage_longer_than_the_buffer_across_a_boundary_keeps_the_newest_exactly(
    fake_bybit, plugin_manager, redis_server, redis_client, mock_clock
):
    fake = fake_bybit
    toml = (bybit_source(fake, SYMBOLS, streams=["trades", "tickers"]) + KLINES_1M_WAITER
            + BOUNDARY_SINKS.format(port=redis_server.port, max_buffer=MAX_BUFFER))
    topics = [f"{kind}.{s}" for kind in ("publicTrade", "tickers") for s in SYMBOLS]

    def price(phase: int, round_: int, n: int) -> str:
        return f"{1000 * phase + 10 * round_ + n}.5"

    with trio.fail_after(300):  # virtual seconds
        async with trio.open_nursery() as ticker:
            ticker.start_soon(small_jumps)  # running from the start: the sinks probe Redis
            async with running_pipeline(toml, plugin_manager) as pipeline:
                storage_input = pipeline.node("storage_input")
                pub_input = pipeline.node("pub_input")
                await fake.wait_subscribed("linear", topics)
                m0 = clock.now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
                m1 = m0 + MINUTE_MS

                async def trades_and_tickers(phase: int, rounds: int, count: int) -> None:
                    for round_ in range(rounds):
                        for n, s in enumerate(SYMBOLS):
                            fake.trade("linear", s, count=count)
                            fake.set_ticker("linear", s, markPrice=price(phase, round_, n))
                        await trio.sleep(0.5)
                        await pub_input.wait_for(lambda ev: all_trades_in(ev))

                def all_trades_in(events: list[Event]) -> bool:
                    return all(trade_ids(events, s) == [t["i"] for t in fake.history("linear", s)]
                               for s in SYMBOLS)

                # Redis up: minute 0 starts, everything written.
                await sleep_until_ms(m0 + 1_000)
                await trades_and_tickers(1, 1, 2)
                await wait_metric(pipeline, "storage", "written_events", len(storage_input.events))
                await wait_metric(pipeline, "pub", "written_events", len(pub_input.events))
                storage_before, pub_before = len(storage_input.events), len(pub_input.events)

                # Kill and restart block the trio loop on purpose: virtual time cannot run on
                # (and close another minute) while redis-server starts in real time.
                redis_server.kill()
                # Down: 20 rounds in minute 0, its candles close (boundary + waiter), 3 rounds
                # in minute 1. Far more events than the buffer holds.
                await trades_and_tickers(2, 20, 2)
                await sleep_until_ms(m1 + 1_000)
                await storage_input.wait_for(lambda ev: len(closed_klines(ev, SYMBOLS[-1])) == 1)
                await trades_and_tickers(3, 3, 1)
                await wait_metric(pipeline, "storage", "write_failures", 1)
                await wait_metric(pipeline, "pub", "write_failures", 1)
                storage_outage = storage_input.events[storage_before:]
                pub_outage = pub_input.events[pub_before:]
                assert len(storage_outage) > MAX_BUFFER and len(pub_outage) > MAX_BUFFER
                assert pipeline.metrics()["storage"]["buffer_dropped_events"] == (
                    len(storage_outage) - MAX_BUFFER)
                assert (pipeline.metrics()["pub"]["buffer_dropped_events"]
                        == len(pub_outage) - MAX_BUFFER)

                redis_server.restart()
                await wait_metric(pipeline, "storage", "written_events",
                                  storage_before + MAX_BUFFER)
                await wait_metric(pipeline, "pub", "written_events", pub_before + MAX_BUFFER)
                client = redis_server.client()
                try:
                    history = {s: client.lrange(f"bybit-streamer:history:linear:1m:{s}", 0, -1)
                               for s in SYMBOLS}
                    last_closed = client.get("bybit-streamer:last-closed:linear:1m")
                    stored_tickers = client.hgetall("bybit-streamer:tickers:linear")
                    stored_prices = client.hgetall("bybit-streamer:price:linear")
                    streamed_trades = stream_items(client, STREAM_KEY)
                    streamed_tickers = stream_items(client, TICKERS_STREAM_KEY)
                finally:
                    client.close()
                metrics = pipeline.metrics()
                losses = pipeline.losses()
            ticker.cancel_scope.cancel()

    # Exactly the newest MAX_BUFFER events of the outage were kept, the rest dropped, counted.
    kept_storage = storage_outage[-MAX_BUFFER:]
    kept_pub = pub_outage[-MAX_BUFFER:]
    assert metrics["storage"]["buffer_dropped_events"] == len(storage_outage) - MAX_BUFFER
    assert metrics["pub"]["buffer_dropped_events"] == len(pub_outage) - MAX_BUFFER
    # ... and they are the run's losses (`streamer run` would exit 3), nothing else is.
    assert losses == {
        "storage": {"buffer_dropped_events": len(storage_outage) - MAX_BUFFER},
        "pub": {"buffer_dropped_events": len(pub_outage) - MAX_BUFFER}}
    assert metrics["storage"]["written_events"] == storage_before + MAX_BUFFER
    assert metrics["pub"]["written_events"] == pub_before + MAX_BUFFER
    # The pub/sub streams hold the kept trades and tickers, in order, once.
    assert [t["i"] for t in streamed_trades] == [t.trade_id for t in of_type(kept_pub, Trade)]
    assert [(t["symbol"], t["markPrice"]) for t in streamed_tickers] == [
        (t.symbol, float(t.fields["markPrice"])) for t in of_type(kept_pub, Ticker)]

    # The minute closed during the outage was among the kept events: it is in the history
    # and the closed-kline key, equal to OHLCV from the fake's trades of that minute (the
    # aggregator saw every trade; only the storage sink's copies of them were dropped).
    kept_klines = of_type(kept_storage, Kline)
    assert sorted(k.symbol for k in kept_klines) == sorted(SYMBOLS)
    for s in SYMBOLS:
        (stored,) = [msgspec.json.decode(raw) for raw in history[s]]
        assert (stored["timestamp"], stored["closed"]) == (m0, True)
        want = expected_klines(fake.history("linear", s))[m0]
        got = (stored["open"], stored["high"], stored["low"], stored["close"],
               stored["volume"], stored["trade_count"])
        assert got == want == kline_tuple(closed_klines(storage_input.events, s)[0])
        assert want[5] == 2 * 21  # phase 1 (1 round) and phase 2 (20 rounds), 2 trades each
    assert last_closed is not None
    assert [(k["symbol"], k["timestamp"]) for k in msgspec.json.decode(last_closed)] == [
        (s, m0) for s in sorted(SYMBOLS)]
    # Latest values: phase 3's last round.
    assert {k.decode(): float(v) for k, v in stored_prices.items()} == {
        s: float(price(3, 2, n)) for n, s in enumerate(SYMBOLS)}
    assert {k.decode(): msgspec.json.decode(v)["markPrice"]
            for k, v in stored_tickers.items()} == {
        s: float(price(3, 2, n)) for n, s in enumerate(SYMBOLS)}
    # The collectors (and so the source) never stalled; no inbox overflowed.
    assert all(trade_ids(pub_input.events, s) == [t["i"] for t in fake.history("linear", s)]
               for s in SYMBOLS)
    assert not any(m.get("inbox_dropped_batches") for m in metrics.values())
