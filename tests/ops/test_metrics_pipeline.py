"""/metrics, /healthz and /readyz of a pipeline fed by the fake Bybit (in-process, real
sockets on 127.0.0.1, trio's MockClock)."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from prometheus_client.parser import text_string_to_metric_families

from ops.httpget import get, get_json
from streamer._config import load_config_text
from streamer._metrics_http import OpsServer, serve_ops
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer_bybit.simulator.server import FakeBybit

CONFIG = """
[[sources]]
name = "linear"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
streams = ["trades"]
url = "{ws}"
rest_url = "{rest}"
stale_timeout = 30
reconnect_max_delay = 5

[[sinks]]
type = "console"
format = "pretty"
stream = "stderr"
"""


@asynccontextmanager
async def ops_pipeline(fake: FakeBybit, max_age: float = 10.0) -> AsyncIterator[OpsServer]:
    pm = load_plugin_manager()
    config = load_config_text(CONFIG.format(ws=fake.ws_url("linear"), rest=fake.rest_url), pm,
                              environ={})
    pipeline = Pipeline(config, pm)
    async with trio.open_nursery() as nursery:
        ops: OpsServer = await nursery.start(
            functools.partial(serve_ops, pipeline, "127.0.0.1:0", max_data_age=max_age))
        await nursery.start(pipeline.run)
        ops.pipeline_started = True
        yield ops
        nursery.cancel_scope.cancel()



def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


async def trades(fake: FakeBybit, n: int) -> None:
    for _ in range(n):
        fake.trade("linear", "BTCUSDT")
        fake.trade("linear", "ETHUSDT")
    await fake.flush()


async def written(ops: OpsServer) -> float:
    parsed = samples((await get(ops.port, "/metrics"))[1].decode())
    key = ("streamer_sink_written_events_total",
           frozenset({"node": "console", "type": "console"}.items()))
    return parsed.get(key, 0)  # no sample before the first write


async def wait_real(done: Callable[[], Awaitable[bool]], seconds: float = 60.0) -> None:
    """Wait for a worker thread (the console writes in one). Under autojump virtual time
    runs on while the thread works, by as much as the machine is loaded, so the bound is
    real time; polled from a thread, not by spinning the clock."""
    deadline = time.monotonic() + seconds
    while not await done():
        assert time.monotonic() < deadline, f"not done after {seconds} s of real time"
        await trio.to_thread.run_sync(time.sleep, 0.01)


async def _at_least(ops: OpsServer, n: int) -> bool:
    return await written(ops) >= n


async def scrape(ops: OpsServer) -> dict:
    status, body = await get(ops.port, "/metrics")
    assert status == 200
    return samples(body.decode())


async def test_metrics_parse_and_trade_counters_rise(fake_bybit, autojump_clock) -> None:
    # No virtual deadline: while the console's thread writes, the clock jumps from timer to
    # timer and would reach it; wait_real bounds those waits in real time instead. The
    # source's figures are scraped before any such wait, at known virtual times.
    async with ops_pipeline(fake_bybit) as ops:
        src = {"node": "linear", "type": "bybit.linear"}
        sink = {"node": "console", "type": "console"}
        await trades(fake_bybit, 5)
        await trio.sleep(0.01)  # past the source's 5 ms coalescing wait
        first = await scrape(ops)
        await trades(fake_bybit, 10)
        await trio.sleep(0.01)
        second = await scrape(ops)
        await wait_real(lambda: _at_least(ops, 30))
        written = await scrape(ops)
    name = "streamer_source_received_trades_total"
    assert value(first, name, **src) == 10
    assert value(second, name, **src) - value(first, name, **src) == 20
    assert value(second, "streamer_source_connections", **src) == 1
    assert value(second, "streamer_source_subscribed_topics", **src) == 2
    assert value(second, "streamer_source_reconnects_total", **src) == 0
    assert value(second, "streamer_source_last_message_age_seconds",
                 connection="linear#0", **src) == 0.01
    assert value(second, "streamer_ready") == 1
    assert value(written, "streamer_sink_written_events_total", **sink) == 30
    assert value(written, "streamer_sink_inbox_depth_batches", **sink) == 0  # all written
    assert value(written, "streamer_sink_inbox_capacity_batches", **sink) == 1000
    assert value(written, "streamer_sink_inbox_dropped_events_total", **sink) == 0
    assert ("streamer_event_loop_lag_seconds", frozenset()) in second
    assert value(second, "process_resident_memory_bytes") > 1_000_000
    assert ("process_cpu_seconds_total", frozenset()) in second


async def test_readyz_follows_the_fake(fake_bybit, autojump_clock) -> None:
    max_age = 10.0
    with trio.fail_after(600):
        async with ops_pipeline(fake_bybit, max_age=max_age) as ops:
            await trades(fake_bybit, 1)
            assert await get_json(ops.port, "/readyz") == (200, {"ready": True})
            status, doc = await get_json(ops.port, "/healthz")
            assert status == 200 and doc["status"] == "alive"
            # Connected but silent: not ready once the newest data is older than max_age.
            quiet_since = trio.current_time()
            await trio.sleep_until(quiet_since + max_age - 0.01)
            assert (await get(ops.port, "/readyz"))[0] == 200
            await trio.sleep(0.02)
            assert (await get(ops.port, "/readyz"))[0] == 503  # max_age, to 10 ms
            status, doc = await get_json(ops.port, "/readyz")
            assert status == 503 and "no data for" in doc["not_ready"]["linear"][0]
            await trades(fake_bybit, 1)
            assert (await get(ops.port, "/readyz"))[0] == 200
            # The fake goes away: 503 at once (the connection is lost), naming the source.
            port = fake_bybit.port
            fake_bybit.stop()
            await trio.sleep(0.1)
            status, doc = await get_json(ops.port, "/readyz")
            assert status == 503
            assert list(doc["not_ready"]) == ["linear"]
            assert doc["not_ready"]["linear"][0].startswith("linear#0: ")
            # It comes back on the same port: ready again once resubscribed and fed.
            fake = FakeBybit(linear_symbols=["BTCUSDT", "ETHUSDT"], port=port)
            async with trio.open_nursery() as nursery:
                await nursery.start(fake.serve)
                while (await get(ops.port, "/readyz"))[0] != 200:
                    await trio.sleep(0.5)
                    fake.trade("linear", "BTCUSDT")
                nursery.cancel_scope.cancel()
