"""The postgres sink when the database goes away: a crash (kill -9 of the server and its
backends) and a restart, an outage longer than the memory buffer (the spool), the bounds
past which rows are dropped and counted, and a shutdown with the database down. Each test
has a server of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from pg_helpers import make_sink, running, trade, trade_ids, wait_until
from postgres_server import PASSWORD, PASSWORD_ENV, PostgresServer
from server_process import start_on_free_ports

SCHEMA = "market"


@pytest.fixture
def own_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresServer]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    server = start_on_free_ports(PostgresServer, PostgresServer.start, PostgresServer.stop)
    try:
        yield server
    finally:
        server.stop()


def _ready(sink) -> bool:
    return all(state.ready for state in sink.context.health.states())


def _losses(sink) -> dict[str, int]:
    metrics = sink.context.metrics
    return {key: metrics[key] for key in metrics.loss_keys if metrics[key]}


async def test_kill_9_mid_stream_and_restart_loses_and_doubles_nothing(own_server):
    sink = make_sink(own_server, SCHEMA, flush_size=200)
    total = 6000
    with trio.fail_after(90):
        async with running(sink) as inbox:
            async def feed() -> None:
                for start in range(0, total, 100):
                    await inbox.put([trade(i) for i in range(start, start + 100)])
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed)
                await wait_until(lambda: sink.writer.written_rows >= 1500)
                own_server.kill()
                await wait_until(lambda: not _ready(sink))
                own_server.start()
            await wait_until(lambda: sink.writer.written_rows >= total
                             and sink.writer.held_rows == 0)
    assert sorted(trade_ids(own_server, SCHEMA)) == sorted(f"t{i}" for i in range(total))
    assert sink.context.metrics["write_failures"] >= 1
    assert _losses(sink) == {}
    assert _ready(sink)


async def test_an_outage_longer_than_the_buffer_goes_to_the_spool_and_back_in_order(
        own_server, tmp_path):
    spool_dir = tmp_path / "spool"
    sink = make_sink(own_server, SCHEMA, max_buffer=500, flush_size=100,
                     spool_dir=str(spool_dir))
    with trio.fail_after(90):
        async with running(sink) as inbox:
            await inbox.put([trade(i) for i in range(100)])
            await wait_until(lambda: sink.writer.written_rows == 100)
            own_server.kill()
            for start in range(100, 3000, 50):
                await inbox.put([trade(i) for i in range(start, start + 50)])
            # 500 in memory; 2400 more: four spool files of 500 and 400 pending.
            await wait_until(lambda: sink.writer.spool is not None
                             and len(sink.writer.spool) == 4)
            assert len(list(spool_dir.iterdir())) == 4
            await wait_until(lambda: not _ready(sink))
            own_server.start()
            await wait_until(lambda: sink.writer.held_rows == 0)
    # Heap order of an insert-only table is the order of the writes.
    assert trade_ids(own_server, SCHEMA, order="ctid") == [f"t{i}" for i in range(3000)]
    assert sink.context.metrics["spooled_rows"] == 2000
    assert sink.writer.duplicate_rows == 0
    assert _losses(sink) == {}
    assert list(spool_dir.iterdir()) == []


async def test_without_a_spool_rows_past_max_buffer_are_dropped_and_counted(own_server):
    sink = make_sink(own_server, SCHEMA, max_buffer=300)
    with trio.fail_after(60):
        async with running(sink) as inbox:
            await inbox.put([trade(0)])
            await wait_until(lambda: sink.writer.written_rows == 1)
            own_server.kill()
            for start in range(1, 1001, 100):
                await inbox.put([trade(i) for i in range(start, start + 100)])
            await wait_until(lambda: sink.context.metrics["buffer_dropped_rows"] == 700)
            own_server.start()
            await wait_until(lambda: sink.writer.held_rows == 0)
    assert sorted(trade_ids(own_server, SCHEMA)) == sorted(f"t{i}" for i in range(301))
    assert _losses(sink) == {"buffer_dropped_rows": 700}


async def test_rows_past_the_spool_bound_are_dropped_and_counted(own_server, tmp_path):
    sink = make_sink(own_server, SCHEMA, max_buffer=200, spool_dir=str(tmp_path),
                     spool_max_bytes=1 << 16)
    total = 8001  # trade 0, then 1 .. 8000
    with trio.fail_after(60):
        async with running(sink) as inbox:
            await inbox.put([trade(0)])
            await wait_until(lambda: sink.writer.written_rows == 1)
            own_server.kill()
            for start in range(1, total, 100):
                await inbox.put([trade(i) for i in range(start, start + 100)])
            await wait_until(lambda: sink.context.metrics["spool_full_rows"] > 0)
            own_server.start()
            await wait_until(lambda: sink.writer.held_rows == 0)
    stored = trade_ids(own_server, SCHEMA)
    dropped = sink.context.metrics["spool_full_rows"]
    assert len(stored) + dropped == total
    assert _losses(sink) == {"spool_full_rows": dropped}
    assert sink.writer.spool is not None and sink.writer.spool.bytes == 0


async def test_shutdown_with_the_database_down_counts_what_is_left(own_server):
    sink = make_sink(own_server, SCHEMA, shutdown_timeout=0.5)
    with trio.fail_after(30):
        async with running(sink) as inbox:
            await inbox.put([trade(0)])
            await wait_until(lambda: sink.writer.written_rows == 1)
            own_server.kill()
            await inbox.put([trade(i) for i in range(1, 251)])
            start = trio.current_time()
    assert trio.current_time() - start < 5
    assert _losses(sink) == {"lost_at_shutdown": 250}


async def test_shutdown_with_the_database_down_keeps_the_rows_in_the_spool_for_the_next_run(
        own_server, tmp_path):
    first = make_sink(own_server, SCHEMA, shutdown_timeout=0.5, max_buffer=100,
                      spool_dir=str(tmp_path))
    with trio.fail_after(30):
        async with running(first) as inbox:
            await inbox.put([trade(0)])
            await wait_until(lambda: first.writer.written_rows == 1)
            own_server.kill()
            await inbox.put([trade(i) for i in range(1, 251)])
    assert _losses(first) == {}
    assert first.writer.spool is not None and first.writer.spool.rows == 250
    own_server.start()
    second = make_sink(own_server, SCHEMA, spool_dir=str(tmp_path))
    with trio.fail_after(30):
        async with running(second) as inbox:
            await wait_until(lambda: second.writer.written_rows == 250)
            await inbox.put([trade(251)])
            await wait_until(lambda: second.writer.written_rows == 251)
    assert trade_ids(own_server, SCHEMA, order="ctid") == [f"t{i}" for i in range(252)]
    assert list(tmp_path.iterdir()) == []


async def test_a_hung_server_costs_write_timeout_then_everything_is_stored_once(own_server):
    sink = make_sink(own_server, SCHEMA, write_timeout=1.0, connect_timeout=1.0)
    with trio.fail_after(60):
        async with running(sink) as inbox:
            await inbox.put([trade(i) for i in range(100)])
            await wait_until(lambda: sink.writer.written_rows == 100)
            own_server.pause()
            await inbox.put([trade(i) for i in range(100, 300)])
            await wait_until(lambda: sink.context.metrics["write_failures"] >= 1)
            assert not _ready(sink)
            own_server.resume()
            await wait_until(lambda: sink.writer.held_rows == 0)
    assert sorted(trade_ids(own_server, SCHEMA)) == sorted(f"t{i}" for i in range(300))
    assert _losses(sink) == {}


async def test_shutdown_while_the_server_hangs_is_bounded_by_shutdown_timeout(own_server):
    sink = make_sink(own_server, SCHEMA, shutdown_timeout=1.0)  # write_timeout 30 s
    try:
        with trio.fail_after(30):
            async with running(sink) as inbox:
                await inbox.put([trade(0)])
                await wait_until(lambda: sink.writer.written_rows == 1)
                own_server.pause()
                await inbox.put([trade(i) for i in range(1, 51)])
                await wait_until(lambda: sink.writer._write_scope is not None)
                closed_at = trio.current_time()
        # The sink's own bound (+1 s of slack for a loaded machine), not the 30 s write_timeout.
        assert trio.current_time() - closed_at < 2.0
    finally:
        own_server.resume()
    assert _losses(sink) == {"lost_at_shutdown": 50}


async def test_a_damaged_spool_file_is_counted_and_the_rest_written_in_order(own_server,
                                                                           tmp_path):
    from streamer_postgres.rows import rows_of
    from streamer_postgres.spool import Spool

    spool = Spool(str(tmp_path), 1 << 20)
    assert spool.append(rows_of([trade(i) for i in range(0, 10)]))
    assert spool.append(rows_of([trade(i) for i in range(10, 25)]))
    assert spool.append(rows_of([trade(i) for i in range(25, 30)]))
    damaged = spool._files[1].path
    with open(damaged, "r+b") as f:
        f.truncate(7)
    (tmp_path / "00000000000000000001.3.rows.tmp").write_bytes(b"cut short by a crash")
    sink = make_sink(own_server, SCHEMA, spool_dir=str(tmp_path))
    with trio.fail_after(30):
        async with running(sink):
            await wait_until(lambda: sink.writer.held_rows == 0)
    assert trade_ids(own_server, SCHEMA, order="ctid") == [f"t{i}" for i in range(10)] + [
        f"t{i}" for i in range(25, 30)]
    assert _losses(sink) == {"unwritable_rows": 15}
    assert list(tmp_path.iterdir()) == []
