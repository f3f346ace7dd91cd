"""The ``nats`` source: durable consumer, explicit acks only after every sink accepted the
batch, start positions; and nats source -> console reproducing the stream."""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from faults.procs import start_streamer
from nats_helpers import (
    SYMBOLS,
    consumer_info,
    messages,
    publish_events,
    replica_config,
    start_replica,
    stop_replica,
    wait_log,
    wait_stream_count,
)

from streamer import Kline, Price, Ticker, Trade
from streamer.testing import running_pipeline
from streamer_nats.source import NatsSourceConfig

N_TRADES = 300


def _trades(n: int, start: int = 0) -> list[Trade]:
    return [Trade("linear", SYMBOLS[i % len(SYMBOLS)], 1_764_000_000_000 + i, "Buy",
                  f"{100 + i % 7}.5", "0.01", f"id-{i}", "PlusTick", False, False, i)
            for i in range(start, start + n)]


async def wait_consumer_done(url: str, durable: str, timeout: float = 60.0) -> Any:
    """Wait until ``durable`` has nothing left to deliver and every delivery is acked: no
    event can reach the sinks after that (the timeout only turns a hang into a failure)."""
    with trio.fail_after(timeout):
        while True:
            info = await consumer_info(url, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return info
            await trio.sleep(0.05)


async def wait_consumer_exists(url: str, durable: str, timeout: float = 60.0) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                await consumer_info(url, durable)
                return
            except Exception:  # not created yet
                await trio.sleep(0.05)


SOURCE_TOML = """
[[sources]]
name = "edge"
type = "nats"
url = "{url}"
durable = "edge"
deliver = "{deliver}"
batch = 100
fetch_timeout = 0.2
{extra}

[[sinks]]
name = "collect"
type = "testing.collect"
inputs = ["edge"]
delay = {delay}
"""


async def test_every_event_kind_round_trips(nats_server, plugin_manager):
    events: list[Any] = [
        *_trades(3),
        Kline("linear", "BTCUSDT", 60_000, 1_764_000_000_000, 1.0, 2.0, 0.5, 1.5, 3.25, 7),
        Kline("spot", "ETHUSDT", 60_000, 1_764_000_000_000, 1.0, 2.0, 0.5, 1.5, 3.25, None,
              closed=False, turnover=4.5),
        Kline("linear", "SOLUSDT", 300_000, 1_764_000_000_000, 1.0, 2.0, 0.5, 1.5, 3.0, 2,
              partial=True),
        Ticker("linear", "BTCUSDT", 1_764_000_000_001, {"symbol": "BTCUSDT",
                                                        "lastPrice": 91234.5}),
        Price("spot", "XRPUSDT", 2.5, 1_764_000_000_002),
    ]
    await publish_events(nats_server.url, events)
    toml = SOURCE_TOML.format(url=nats_server.url, deliver="all", extra="", delay=0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        sink = pipeline.node("collect")
        with trio.fail_after(10):
            got = await sink.wait_for(len(events))
    assert got == events


async def test_acks_only_after_every_sink_accepted(nats_server, plugin_manager):
    """A slow sink holds its batch for 3 s: meanwhile the consumer has that batch
    delivered but not acknowledged; once the sink comes back for more, it is acked."""
    await publish_events(nats_server.url, _trades(N_TRADES))
    toml = SOURCE_TOML.format(url=nats_server.url, deliver="all", extra="", delay=3.0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        sink = pipeline.node("collect")
        with trio.fail_after(60):
            while sink.deliveries == 0:
                await trio.sleep(0.01)
        # asked at once: the sink is "handling" its first batch for 3 s (room for a loaded
        # machine's slow answer); the first batch is 100 trades
        held = await consumer_info(nats_server.url, "edge")
        assert sink.events == []
        assert held.num_ack_pending > 0
        assert held.ack_floor.stream_seq == 0
        with trio.fail_after(60):
            await sink.wait_for(N_TRADES)
            while (await consumer_info(nats_server.url, "edge")).num_ack_pending:
                await trio.sleep(0.2)
    done = await consumer_info(nats_server.url, "edge")
    assert done.ack_floor.stream_seq == N_TRADES and done.num_pending == 0


async def test_durable_resumes_after_the_last_ack_and_start_positions(nats_server,
                                                                      plugin_manager):
    await publish_events(nats_server.url, _trades(100))
    toml = SOURCE_TOML.format(url=nats_server.url, deliver="all", extra="", delay=0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        with trio.fail_after(10):
            await pipeline.node("collect").wait_for(100)
        with trio.fail_after(10):
            while (await consumer_info(nats_server.url, "edge")).num_ack_pending:
                await trio.sleep(0.1)
    await publish_events(nats_server.url, _trades(50, start=100))
    async with running_pipeline(toml, plugin_manager) as pipeline:  # same durable
        sink = pipeline.node("collect")
        with trio.fail_after(10):
            got = await sink.wait_for(50)
        await wait_consumer_done(nats_server.url, "edge")  # nothing more can come
    assert [e.trade_id for e in got] == [f"id-{i}" for i in range(100, 150)]
    # deliver = "sequence" on a new durable starts there; "new" sees nothing old
    seq = SOURCE_TOML.format(url=nats_server.url, deliver="sequence",
                             extra="start_sequence = 141", delay=0)
    seq = seq.replace('durable = "edge"', 'durable = "by-seq"')
    async with running_pipeline(seq, plugin_manager) as pipeline:
        sink = pipeline.node("collect")
        with trio.fail_after(10):
            got = await sink.wait_for(10)
        await wait_consumer_done(nats_server.url, "by-seq")
    assert [e.trade_id for e in sink.events] == [f"id-{i}" for i in range(140, 150)]
    new = SOURCE_TOML.format(url=nats_server.url, deliver="new", extra="", delay=0)
    new = new.replace('durable = "edge"', 'durable = "only-new"')
    async with running_pipeline(new, plugin_manager) as pipeline:
        await wait_consumer_exists(nats_server.url, "only-new")  # "new" from its creation
        await publish_events(nats_server.url, _trades(5, start=150))
        sink = pipeline.node("collect")
        with trio.fail_after(10):
            await sink.wait_for(5)
        await wait_consumer_done(nats_server.url, "only-new")
    assert [e.trade_id for e in sink.events] == [f"id-{i}" for i in range(150, 155)]


@pytest.mark.parametrize("options", [
    {"deliver": "time"}, {"deliver": "time", "start_time": "yesterday"},
    {"deliver": "time", "start_time": "2026-12-01T10:00:00"},
    {"deliver": "sequence"}, {"subjects": []}, {"durable": "a.b"}, {"batch": 0},
    {"url": "nats://user:pw@127.0.0.1:4222"}, {"url": "http://x"},
])
def test_bad_source_config(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NatsSourceConfig(**options)


CONSOLE_TOML = """
[streamer]
log_level = "INFO"

[[sources]]
name = "edge"
type = "nats"
url = "{url}"
durable = "console"
deliver = "all"
subjects = ["bybit.linear.trades.>", "bybit.linear.klines.>"]

[[sinks]]
type = "console"
inputs = ["edge"]
"""


def _per_subject(items: list[tuple[str, dict[str, Any]]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = collections.defaultdict(list)
    for key, item in items:
        out[key].append(item)
    return dict(out)


def _key(data_type: str, item: dict[str, Any]) -> str:
    if data_type == "trades":
        return f"trades.{item['s']}"
    return f"klines.{item['interval']}.{item['symbol']}"


async def test_nats_source_to_console_reproduces_the_stream_in_order(
        tmp_path: Path, fake_bybit, nats_server):
    # fill the stream from the fake Bybit through a `streamer run` with the nats sink
    config = replica_config(tmp_path / "pub.toml", fake_bybit, [nats_server.url], klines=True)
    publisher_log = tmp_path / "pub.log"
    publisher = await start_replica(config, publisher_log)
    try:
        await fake_bybit.run_market("linear", SYMBOLS, rate=2_000, count=1_500,
                                    tickers=False)
        await wait_stream_count(nats_server.url, 1_500)
    finally:
        assert await stop_replica(publisher) == 0, publisher_log.read_text()[-3000:]
    msgs = await messages(nats_server.url)
    stored = [(msgspec.json.decode(m.data)) for m in msgs]
    expected = _per_subject([(_key(env["data_type"], item), item) for env in stored
                             for item in env["data"]])
    # read it back: nats source -> console
    console_toml = tmp_path / "edge.toml"
    console_toml.write_text(CONSOLE_TOML.format(url=nats_server.url))
    out_path, log = tmp_path / "edge.out", tmp_path / "edge.log"
    with open(out_path, "wb") as out:
        proc = start_streamer(console_toml, log, stdout=out)
        try:
            await wait_log(log, "pipeline running", proc)
            with trio.move_on_after(20):
                want = sum(len(v) for v in expected.values())
                while _count_items(out_path) < want:
                    await trio.sleep(0.1)
        finally:
            proc.send_signal(15)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert rc == 0, log.read_text()[-3000:]
    lines = [msgspec.json.decode(line) for line in out_path.read_bytes().splitlines()]
    assert all(set(env) == {"channel", "data_type", "data"} for env in lines)
    got = _per_subject([(_key(env["data_type"], item), item) for env in lines
                        for item in env["data"]])
    assert got == expected


def _count_items(path: Path) -> int:
    n = 0
    for line in path.read_bytes().splitlines():
        try:
            n += len(msgspec.json.decode(line)["data"])
        except (msgspec.DecodeError, KeyError):
            pass
    return n


async def test_deliver_by_start_time(nats_server, plugin_manager):
    from datetime import timedelta, timezone

    # The start time lies between the server's stamps of the two batches: 1 ms after the
    # first batch's last one (reading it back takes longer than that, checked below).
    await publish_events(nats_server.url, _trades(20))
    last = (await messages(nats_server.url))[-1].metadata.timestamp
    since_at = last + timedelta(milliseconds=1)
    since = since_at.astimezone(timezone.utc).isoformat()
    await publish_events(nats_server.url, _trades(7, start=20))
    assert (await messages(nats_server.url))[20].metadata.timestamp > since_at
    toml = SOURCE_TOML.format(url=nats_server.url, deliver="time",
                              extra=f'start_time = "{since}"', delay=0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        sink = pipeline.node("collect")
        with trio.fail_after(10):
            await sink.wait_for(7)
        await wait_consumer_done(nats_server.url, "edge")
    assert [e.trade_id for e in sink.events] == [f"id-{i}" for i in range(20, 27)]
