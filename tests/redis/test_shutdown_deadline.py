"""The redis and storage sinks at shutdown while Redis hangs (a SIGSTOPped redis-server: it
accepts, buffers what is sent in the kernel, answers nothing). The write in flight and any
retry end at the sink's ``shutdown_timeout`` after the inbox closed, whatever
``socket_timeout`` says, and what the sink still holds is counted in ``lost_at_shutdown``.
Virtual time (MockClock): the figures are exact."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from redis_server import RedisServer
from sink_helpers import buffered, make_context, ticker, wait_until

from streamer import Inbox
from streamer_redis.sink import RedisSink, RedisSinkConfig
from streamer_redis.storage import StorageConfig, StorageSink

SHUTDOWN_TIMEOUT = 2.0
#: Longer than the shutdown window: before the fix the write in flight outlived it.
SOCKET_TIMEOUT = 30.0
WRITTEN, BUFFERED = 10, 1500


def build(kind: str, server: RedisServer) -> Any:
    options: dict[str, Any] = dict(port=server.port, shutdown_timeout=SHUTDOWN_TIMEOUT,
                                   socket_timeout=SOCKET_TIMEOUT, flush_interval=0.01)
    if server.tls_cert:
        options.update(url=f"rediss://127.0.0.1:{server.port}/0", tls_ca_file=server.tls_cert)
    if kind.startswith("redis"):
        return RedisSink(RedisSinkConfig(**options), make_context(kind))
    return StorageSink(StorageConfig(**options), make_context(kind))


def tickers(first: int, count: int) -> list[Any]:
    # Tickers: both sinks write them (the storage sink ignores trades).
    return [ticker(f"S{i}", markPrice=f"{i}.5") for i in range(first, first + count)]


@pytest.mark.parametrize("kind", ["redis", "storage", "redis-tls"])
async def test_a_hung_server_costs_shutdown_timeout_and_the_buffer_is_counted(
        kind, mock_clock, caplog):
    """redis-tls: TLS goes through redis-py in a worker thread; the deadline abandons it."""
    caplog.set_level(logging.ERROR)
    with RedisServer(tls=kind.endswith("tls")) as server:
        sink = build(kind, server)
        metrics = sink.context.metrics
        inbox = Inbox("test", 1000, "block")
        with trio.fail_after(600):  # virtual seconds
            async with trio.open_nursery() as nursery:
                await nursery.start(sink.run, inbox)
                await inbox.put(tickers(0, WRITTEN))
                await wait_until(lambda: metrics["written_events"] == WRITTEN)
                server.pause()
                last_write = sink.writer.last_write_started
                for start in range(WRITTEN, WRITTEN + BUFFERED, 100):
                    await inbox.put(tickers(start, 100))
                # A write to the hung server is in flight (nothing answers it) ...
                await wait_until(lambda: sink.writer.last_write_started != last_write)
                await trio.sleep(1.0)
                assert metrics["written_events"] == WRITTEN
                assert metrics.snapshot().get("write_failures", 0) == 0
                # ... when the shutdown begins.
                closed_at = trio.current_time()
                inbox.close()
            ended_at = trio.current_time()
    assert ended_at - closed_at == SHUTDOWN_TIMEOUT
    assert metrics["written_events"] == WRITTEN
    assert metrics["lost_at_shutdown"] == BUFFERED
    assert buffered(sink) == 0
    assert any(f"{BUFFERED} buffered events lost" in r.getMessage() for r in caplog.records)


async def test_a_writer_cut_off_during_its_shutdown_counts_what_it_held(mock_clock):
    """The pipeline may cancel a sink before its own deadline (a fatal error elsewhere ends
    the run): what the writer held is counted all the same."""
    with RedisServer() as server:
        sink = build("redis", server)
        metrics = sink.context.metrics
        inbox = Inbox("test", 1000, "block")
        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                await nursery.start(sink.run, inbox)
                await inbox.put(tickers(0, WRITTEN))
                await wait_until(lambda: metrics["written_events"] == WRITTEN)
                server.pause()
                await inbox.put(tickers(WRITTEN, BUFFERED))
                inbox.close()
                await trio.sleep(SHUTDOWN_TIMEOUT / 2)
                nursery.cancel_scope.cancel()
    assert metrics["lost_at_shutdown"] == BUFFERED
    assert metrics["written_events"] == WRITTEN
