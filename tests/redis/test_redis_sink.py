"""The ``redis`` sink against a real redis-server: pub/sub, streams, auth, TLS, faults."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest
import redis
import trio
from redis_server import RedisServer
from sink_helpers import buffered, make_context, running, trade, wait_until

from streamer import Book, FatalError
from streamer.testing import config_errors
from streamer.wire import render
from streamer_redis.connection import RedisConnectionConfig
from streamer_redis.sink import RedisSink, RedisSinkConfig


def sink_for(server: RedisServer, **options: Any) -> RedisSink:
    options.setdefault("port", server.port)
    return RedisSink(RedisSinkConfig(**options), make_context("redis"))


def collect_messages(pubsub: redis.client.PubSub, expected: int) -> list[dict[str, Any]]:
    """Worker thread: read ``expected`` messages (or give up after 5 s of silence)."""
    messages = []
    while len(messages) < expected:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
        if message is None:
            break
        messages.append(message)
    return messages


def subscribe(server: RedisServer, pattern: str) -> redis.client.PubSub:
    pubsub = server.client().pubsub()
    pubsub.psubscribe(pattern)
    confirmation = pubsub.get_message(timeout=5.0)
    assert confirmation is not None and confirmation["type"] == "psubscribe"
    return pubsub


async def test_publishes_wire_envelopes_to_main_key(redis_server, redis_client):
    pubsub = subscribe(redis_server, "*")
    batch = [trade(i) for i in range(5)] + [trade(i, "ETHUSDT", "spot") for i in range(3)]
    sink = sink_for(redis_server)
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put(list(batch))
        messages = await trio.to_thread.run_sync(collect_messages, pubsub, 2)
    assert {m["channel"] for m in messages} == {b"bybit-streamer"}
    envelopes = [msgspec.json.decode(m["data"]) for m in messages]

    def wire_trade(i: int, symbol: str) -> dict:  # the fixed wire format, spelled out
        return {"T": 1_700_000_040_000 + i, "s": symbol, "S": "Buy", "v": "0.01",
                "p": f"{100 + i}.5", "i": str(i)}

    assert envelopes == [
        {"channel": "linear", "data_type": "trades",
         "data": [wire_trade(i, "BTCUSDT") for i in range(5)]},
        {"channel": "spot", "data_type": "trades",
         "data": [wire_trade(i, "ETHUSDT") for i in range(3)]},
    ]
    assert sink.context.metrics["written_events"] == 8
    assert sink.context.metrics["flushes"] == 1  # one pipeline, not one round trip per event


async def test_channel_template_splits_by_channel_type_and_symbol(redis_server, redis_client):
    pubsub = subscribe(redis_server, "md:*")
    batch = [trade(0, "BTCUSDT"), trade(1, "ETHUSDT"), trade(2, "BTCUSDT"),
             trade(3, "BTCUSDT", "spot")]
    sink = sink_for(redis_server, main_key="md",
                    channel_template="{main_key}:{channel}:{data_type}:{symbol}")
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put(list(batch))
        messages = await trio.to_thread.run_sync(collect_messages, pubsub, 3)
    got = {m["channel"].decode(): msgspec.json.decode(m["data"]) for m in messages}
    assert sorted(got) == ["md:linear:trades:BTCUSDT", "md:linear:trades:ETHUSDT",
                           "md:spot:trades:BTCUSDT"]
    assert [t["i"] for t in got["md:linear:trades:BTCUSDT"]["data"]] == ["0", "2"]
    assert got["md:spot:trades:BTCUSDT"] == render([batch[3]])[0]


async def test_book_events_publish_per_symbol_in_the_wire_format(redis_server, redis_client):
    pubsub = subscribe(redis_server, "md:*")
    books = [Book("linear", "BTCUSDT", "snapshot", [["100.5", "1"]], [["101", "2"]], 7, 1_000,
                  3, 999),
             Book("linear", "ETHUSDT", "delta", [["50", "0"]], [], 9, 1_001),
             Book("linear", "BTCUSDT", "delta", [], [["101", "0"]], 8, 1_002, 4, 1_001)]
    sink = sink_for(redis_server, main_key="md",
                    channel_template="{main_key}:{channel}:{data_type}:{symbol}")
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put(list(books))
        messages = await trio.to_thread.run_sync(collect_messages, pubsub, 2)
    got = {m["channel"].decode(): msgspec.json.decode(m["data"]) for m in messages}
    assert got == {
        "md:linear:book:BTCUSDT": {"channel": "linear", "data_type": "book", "data": [
            {"symbol": "BTCUSDT", "kind": "snapshot", "bids": [["100.5", "1"]],
             "asks": [["101", "2"]], "update_id": 7, "ts": 1_000, "seq": 3, "engine_ts": 999},
            {"symbol": "BTCUSDT", "kind": "delta", "bids": [], "asks": [["101", "0"]],
             "update_id": 8, "ts": 1_002, "seq": 4, "engine_ts": 1_001}]},
        "md:linear:book:ETHUSDT": {"channel": "linear", "data_type": "book", "data": [
            {"symbol": "ETHUSDT", "kind": "delta", "bids": [["50", "0"]], "asks": [],
             "update_id": 9, "ts": 1_001}]},
    }


async def test_stream_entries_and_approximate_maxlen(redis_server, redis_client):
    # Small radix-tree nodes so that the approximate trim is visible at small sizes.
    redis_client.config_set("stream-node-max-entries", 10)
    try:
        sink = sink_for(redis_server, stream=True, stream_maxlen=50,
                        channel_template="{main_key}:{symbol}")
        batch = [trade(i, f"S{i:03d}USDT") for i in range(300)]  # 300 envelopes
        with trio.fail_after(10):
            async with running(sink) as inbox:
                await inbox.put(batch)
    finally:
        redis_client.config_set("stream-node-max-entries", 100)
    key = "bybit-streamer:stream:linear:trades"
    assert redis_client.type(key) == b"stream"
    length = redis_client.xlen(key)
    assert 50 <= length <= 60, length
    entries = redis_client.xrange(key)
    # The newest entries survive, in order; "data" holds the envelope JSON.
    last = msgspec.json.decode(entries[-1][1][b"data"])
    assert last == render([batch[-1]])[0]
    ids = [msgspec.json.decode(e[1][b"data"])["data"][0]["i"] for e in entries]
    assert ids == [str(i) for i in range(300 - length, 300)]


async def test_stream_readable_by_consumer_group(redis_server, redis_client):
    key = "bybit-streamer:stream:spot:trades"
    redis_client.xgroup_create(key, "bots", id="0", mkstream=True)
    sink = sink_for(redis_server, stream=True)
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([trade(1, "BTCUSDT", "spot")])
    [[_, entries]] = redis_client.xreadgroup("bots", "bot-1", {key: ">"}, count=10)
    assert [msgspec.json.decode(e[1][b"data"]) for e in entries] == render(
        [trade(1, "BTCUSDT", "spot")]
    )


async def test_password_comes_from_the_environment(monkeypatch):
    with RedisServer(password="s3cret-pw") as server:
        monkeypatch.setenv("MY_REDIS_PW", "s3cret-pw")
        sink = sink_for(server, password_env="MY_REDIS_PW", stream=True)
        with trio.fail_after(10):
            async with running(sink) as inbox:
                await inbox.put([trade(1)])
        assert server.client().xlen("bybit-streamer:stream:linear:trades") == 1

        monkeypatch.setenv("MY_REDIS_PW", "wrong")
        bad = sink_for(server, password_env="MY_REDIS_PW")
        with trio.fail_after(10), pytest.RaisesGroup(
            pytest.RaisesExc(FatalError, match=r"rejected the credentials.*\$MY_REDIS_PW"),
            allow_unwrapped=True, flatten_subgroups=True,
        ):
            async with running(bad):
                pass


def test_password_is_refused_in_the_url():
    with pytest.raises(ValueError, match="must not contain a password"):
        RedisConnectionConfig(url="redis://:secret@127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="scheme must be one of"):
        RedisConnectionConfig(url="http://127.0.0.1:6379")


def test_bad_templates_are_refused():
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) chanel"):
        RedisSinkConfig(channel_template="{main_key}:{chanel}")
    with pytest.raises(ValueError, match=r"stream_template.*symbol"):
        RedisSinkConfig(stream_template="{main_key}:{symbol}")


async def test_tls_with_rediss_url():
    with RedisServer(tls=True) as server:
        assert server.tls_cert is not None
        sink = RedisSink(
            RedisSinkConfig(url=f"rediss://127.0.0.1:{server.port}/0",
                            tls_ca_file=server.tls_cert, stream=True),
            make_context("redis"),
        )
        with trio.fail_after(10):
            async with running(sink) as inbox:
                await inbox.put([trade(7)])
        assert server.client().xlen("bybit-streamer:stream:linear:trades") == 1


async def test_unix_socket_url():
    with RedisServer(unix_socket=True) as server:
        sink = RedisSink(RedisSinkConfig(url=f"unix://{server.unix_socket}?db=2", stream=True),
                         make_context("redis"))
        with trio.fail_after(10):
            async with running(sink) as inbox:
                await inbox.put([trade(7)])
        assert server.client(db=2).xlen("bybit-streamer:stream:linear:trades") == 1


async def test_redis_killed_mid_stream_buffers_drops_oldest_and_catches_up(
    redis_server, redis_client, mock_clock, caplog
):
    caplog.set_level(logging.WARNING, logger="streamer.sink.redis")
    key = "bybit-streamer:stream:linear:trades"
    sink = sink_for(redis_server, stream=True, channel_template="{main_key}:{symbol}",
                    max_buffer=250, reconnect_initial=0.05, reconnect_max=0.5)
    metrics = sink.context.metrics
    with trio.fail_after(120):
        # A tiny blocking inbox: if the sink stopped draining while Redis is down, the puts
        # below would block and the deadline would fire.
        async with running(sink, queue_size=2, overflow="block") as inbox:
            await inbox.put([trade(i, f"A{i}") for i in range(100)])
            await wait_until(lambda: metrics["written_events"] == 100)
            assert redis_client.xlen(key) == 100

            redis_server.kill()
            for start in range(0, 500, 10):
                await inbox.put([trade(i, f"B{i}") for i in range(start, start + 10)])
            await wait_until(lambda: metrics["write_failures"] >= 2)
            await wait_until(lambda: buffered(sink) == 250)
            assert metrics["buffer_dropped_events"] == 250

            redis_server.restart()  # empty: no persistence
            await wait_until(lambda: metrics["written_events"] == 350)
            assert buffered(sink) == 0
    client = redis_server.client()
    # The restarted server got exactly the newest 250 events, in order.
    ids = [msgspec.json.decode(e[1][b"data"])["data"][0]["i"] for e in client.xrange(key)]
    assert ids == [str(i) for i in range(250, 500)]
    drop_lines = [r.getMessage() for r in caplog.records if "dropped the" in r.getMessage()]
    assert drop_lines and "(250 in total)" in drop_lines[-1]
    assert any("is back after" in r.getMessage() for r in caplog.records)


async def test_starts_while_redis_is_down_and_writes_once_it_is_up(mock_clock):
    server = RedisServer()
    sink = sink_for(server, stream=True, reconnect_initial=0.05, reconnect_max=0.2)
    try:
        with trio.fail_after(120):
            async with running(sink) as inbox:  # started although nothing listens yet
                await inbox.put([trade(1), trade(2)])
                await wait_until(lambda: sink.context.metrics["write_failures"] >= 1)
                server.start()
                await wait_until(lambda: sink.context.metrics["written_events"] == 2)
        assert server.client().xlen("bybit-streamer:stream:linear:trades") == 1
    finally:
        server.stop()


async def test_gives_up_at_shutdown_after_shutdown_timeout(mock_clock, caplog):
    server = RedisServer()  # never started
    sink = sink_for(server, shutdown_timeout=3.0, reconnect_initial=0.1, reconnect_max=1.0)
    try:
        with trio.fail_after(120):
            start = trio.current_time()
            async with running(sink) as inbox:
                await inbox.put([trade(1), trade(2), trade(3)])
            elapsed = trio.current_time() - start
    finally:
        server.stop()
    # The inbox closes at once (no virtual time passes before): the writer gives up exactly
    # shutdown_timeout later, its retries cut short by that deadline.
    assert elapsed == pytest.approx(3.0, abs=1e-9)
    assert sink.context.metrics["lost_at_shutdown"] == 3
    assert any("3 buffered events lost" in r.getMessage() for r in caplog.records)


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators, connection options included: every error shows at once."""

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
type = "redis"
max_buffer = 0
reconnect_max = 0.1
channel_template = "{nope}"
flush_size = 0
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: sinks[0].max_buffer: expected at least 1, got 0",
        "s.toml: sinks[0].reconnect_max: reconnect_max (0.1) must be at least "
        "reconnect_initial (0.5)",
        "s.toml: sinks[0].channel_template: channel_template '{nope}': unknown "
        "placeholder(s) nope; allowed: {channel}, {data_type}, {main_key}, {symbol}",
        "s.toml: sinks[0].flush_size: expected at least 1, got 0",
    ]


class _WriterSteps(trio.abc.Instrument):
    """Counts the scheduler steps of the writer task (``BufferedWriter._write_until_closed``)."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("._write_until_closed"):
            self.steps += 1


async def test_a_steady_flow_costs_the_writer_one_step_per_flush(redis_server, mock_clock):
    """A batch every 6 ms with the 10 ms window (a coalescing source at ~1,000 msg/s): each
    second batch finds the window would close before the next and writes at once. The
    writer is not woken when a window opens (the sink's task only sets the deadline of its
    wait), its send takes no scheduler pass of its own, and the replies of a pipeline are
    read when the next one is sent, not by a wake-up of their own: one step per flush, and
    one more for the last pipeline's replies, 40 ms (4 windows) after it."""
    sink = sink_for(redis_server)
    metrics = sink.context.metrics
    steps = _WriterSteps()
    with trio.fail_after(60):
        async with running(sink) as inbox:
            await inbox.put([trade(0)])
            await wait_until(lambda: metrics["written_events"] == 1)  # connected
            await trio.sleep(1)
            trio.lowlevel.add_instrument(steps)
            for i in range(20):
                await inbox.put([trade(i)])
                await trio.sleep(0.006)
            await wait_until(lambda: metrics["written_events"] == 21)
            trio.lowlevel.remove_instrument(steps)
    assert metrics["flushes"] == 1 + 10
    assert steps.steps == 10 + 1
