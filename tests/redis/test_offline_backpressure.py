"""The redis sink behind a source that reads stored data (``testing.stored``, declared not
live like a capture replay) while redis-server hangs (SIGSTOP): the sink waits for room in its
own buffer (``max_buffer``) instead of dropping its oldest events, its inbox fills and blocks,
and the source waits. Once Redis answers again every event is written, in order, once; the run
loses nothing. A shutdown while the sink waits ends the wait: what it took is counted in
``lost_at_shutdown`` at its deadline, as any buffered event. Behind a live source
(``testing.scripted``) the same hang still drops the oldest events and counts them
(unchanged): a live feed is never held up.

Real time (the writes run on real sockets); every wait is for a condition, bounded.
"""

from __future__ import annotations

import msgspec
import trio
from sink_helpers import buffered, trade, wait_until

from streamer.testing import running_pipeline

STREAM_KEY = "bybit-streamer:stream:linear:trades"
MAX_BUFFER = 20
BATCH = 10
#: Batches pushed while Redis hangs: far more than the buffer and the inbox hold.
BATCHES = 30
QUEUE = 4
TOTAL = BATCH * (1 + BATCHES)

PIPELINE = """
[[sources]]
name = "src"
type = "{source}"

[[sinks]]
name = "pub"
type = "redis"
inputs = ["src"]
port = {port}
stream = true
max_buffer = {max_buffer}
queue_size = {queue}
flush_interval = 0
# Longer than the hang: the write in flight waits for the server instead of failing and
# being sent again (which would write its events twice).
socket_timeout = 60
shutdown_timeout = {shutdown_timeout}
"""
SHUTDOWN_TIMEOUT = 0.5


def stream_ids(client) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for _entry_id, fields in client.xrange(STREAM_KEY):
        ids.extend(item["i"] for item in msgspec.json.decode(fields[b"data"])["data"])
    return ids


def batch(n: int) -> list:  # type: ignore[type-arg]
    return [trade(i) for i in range(n * BATCH, (n + 1) * BATCH)]


async def test_a_replay_into_a_hung_redis_waits_and_loses_nothing(
        plugin_manager, redis_server, redis_client):
    toml = PIPELINE.format(source="testing.stored", port=redis_server.port,
                           max_buffer=MAX_BUFFER, queue=QUEUE,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    with trio.fail_after(60):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src, sink = pipeline.node("src"), pipeline.node("pub")
            inbox = pipeline.nodes["pub"].inbox
            metrics = sink.context.metrics
            assert sink.context.live_input is False
            src.push(batch(0))
            await wait_until(lambda: metrics["written_events"] == BATCH)
            redis_server.pause()
            try:
                for n in range(1, 1 + BATCHES):
                    src.push(batch(n))
                # The sink waits for room, its inbox fills, the source waits (without the
                # wait the source emits everything and the sink drops the oldest).
                await wait_until(lambda: len(inbox) == QUEUE or src.emitted == TOTAL)
                assert src.emitted < TOTAL
                assert buffered(sink) <= MAX_BUFFER
                assert metrics["buffer_dropped_events"] == 0
                assert metrics["written_events"] == BATCH
            finally:
                redis_server.resume()
            src.finish()
            await wait_until(lambda: metrics["written_events"] == TOTAL)
        assert src.emitted == TOTAL
    assert stream_ids(redis_client) == [str(i) for i in range(TOTAL)]
    assert metrics["buffer_dropped_events"] == 0
    assert pipeline.losses() == {}
    assert pipeline.lost_total() == 0  # streamer run exits 0


async def test_a_shutdown_ends_the_wait_and_counts_what_the_sink_took(
        plugin_manager, redis_server, redis_client):
    toml = PIPELINE.format(source="testing.stored", port=redis_server.port,
                           max_buffer=MAX_BUFFER, queue=QUEUE,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    with trio.fail_after(60):
        try:
            async with running_pipeline(toml, plugin_manager) as pipeline:
                src, sink = pipeline.node("src"), pipeline.node("pub")
                inbox = pipeline.nodes["pub"].inbox
                metrics = sink.context.metrics
                src.push(batch(0))
                await wait_until(lambda: metrics["written_events"] == BATCH)
                redis_server.pause()
                for n in range(1, 1 + BATCHES):
                    src.push(batch(n))
                await wait_until(lambda: len(inbox) == QUEUE or src.emitted == TOTAL)
                assert src.emitted < TOTAL
                # running_pipeline's exit: pipeline.shutdown(), as SIGTERM does.
                stopped_at = trio.current_time()
            ended_at = trio.current_time()
        finally:
            redis_server.resume()
    # The replay stops where it was; every event it emitted is written or counted, and the
    # batch it was waiting to put into the full inbox is counted too (inbox_cancelled_events).
    assert metrics["written_events"] == BATCH
    assert pipeline.losses() == {"pub": {"inbox_cancelled_events": BATCH,
                                         "lost_at_shutdown": src.emitted - BATCH}}
    # Real time, so a bound: the sink's own deadline, not the hung server, ends the run.
    assert ended_at - stopped_at < SHUTDOWN_TIMEOUT + 1.0


async def test_a_live_source_into_a_hung_redis_still_drops_the_oldest(
        plugin_manager, redis_server, redis_client):
    # A deep inbox: the sink drains it at once (it never waits), so only its buffer drops.
    toml = PIPELINE.format(source="testing.scripted", port=redis_server.port,
                           max_buffer=MAX_BUFFER, queue=1000,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    with trio.fail_after(60):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            src, sink = pipeline.node("src"), pipeline.node("pub")
            metrics = sink.context.metrics
            assert sink.context.live_input is True
            src.push(batch(0))
            await wait_until(lambda: metrics["written_events"] == BATCH)
            redis_server.pause()
            try:
                last_write = sink.writer.last_write_started
                src.push(batch(1))
                # Batch 1 alone is in flight to the hung server ...
                await wait_until(lambda: sink.writer.last_write_started != last_write)
                for n in range(2, 1 + BATCHES):
                    src.push(batch(n))
                # ... and the source is never held up: the buffer keeps the newest
                # MAX_BUFFER events, every older one is dropped and counted.
                dropped = BATCH * BATCHES - MAX_BUFFER
                await wait_until(lambda: metrics["buffer_dropped_events"] == dropped)
                assert src.emitted == TOTAL
            finally:
                redis_server.resume()
            src.finish()
            # The write in flight (batch 1, counted among the dropped: it had left the buffer's
            # bound before Redis answered) and the newest MAX_BUFFER events.
            await wait_until(lambda: metrics["written_events"] == 2 * BATCH + MAX_BUFFER)
    newest = range(TOTAL - MAX_BUFFER, TOTAL)
    assert stream_ids(redis_client) == [str(i) for i in [*range(2 * BATCH), *newest]]
    assert pipeline.losses() == {"pub": {"buffer_dropped_events": dropped}}
    assert pipeline.lost_total() == dropped  # streamer run exits 3
