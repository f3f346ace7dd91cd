"""Fan-out: many clients, slow and stalled clients, max_clients, pings, shutdown."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed

from streamer import Inbox
from websocket.helpers import (
    StartSink,
    close_code,
    connect,
    kline,
    make_sink,
    recv,
    recv_events,
    stalled_client,
    trade,
)


async def test_100_clients_all_receive_everything(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(60):
        sink, inbox = await start_sink(max_clients=100)
        clients = [await connect(nursery, sink) for _ in range(100)]
        await sink.wait_for_clients(100)
        batches, per_batch = 100, 10
        results: dict[int, list] = {}

        async def read(i: int) -> None:
            results[i] = await recv_events(clients[i], batches * (per_batch + 1))

        async with trio.open_nursery() as readers:
            for i in range(100):
                readers.start_soon(read, i)
            for b in range(batches):
                await inbox.put([trade("BTCUSDT", b * per_batch + j) for j in range(per_batch)]
                                + [kline(close=float(b))])
                await trio.sleep(0)
        for items in results.values():
            trades = [item["i"] for _, kind, item in items if kind == "trades"]
            assert trades == [f"t{n}" for n in range(batches * per_batch)]
            closes = [item["close"] for _, kind, item in items if kind == "klines"]
            assert closes == [float(b) for b in range(batches)]
        assert sink.metrics["dropped_envelopes"] == 0


async def test_stalled_client_is_dropped_while_others_keep_full_rate(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(60):
        # A small, blocking inbox: had the sink ever waited on a client, it would fill up
        # and put() would block.
        sink, inbox = await start_sink(
            inbox_size=50, client_queue_size=1000, max_dropped=100, send_timeout=60
        )
        fast = [await connect(nursery, sink) for _ in range(5)]
        stalled = await stalled_client(sink)
        await sink.wait_for_clients(6)
        batches, per_batch = 3000, 20
        received: dict[int, int] = {}
        puts_that_waited = 0  # put() waits only when the inbox is full
        inbox_max = 0

        async def read(i: int) -> None:
            items = await recv_events(fast[i], batches * per_batch)
            received[i] = len(items)

        async with trio.open_nursery() as readers:
            for i in range(5):
                readers.start_soon(read, i)
            for b in range(batches):
                batch = [trade("BTCUSDT", b * per_batch + j) for j in range(per_batch)]
                puts_that_waited += len(inbox) >= inbox.maxsize
                await inbox.put(batch)
                inbox_max = max(inbox_max, len(inbox))
                await trio.sleep(0)
        assert received == {i: batches * per_batch for i in range(5)}
        assert sink.metrics["slow_client_disconnects"] == 1
        assert len(sink.clients) == 5
        assert puts_that_waited == 0
        assert inbox_max < inbox.maxsize
        stalled.close()


async def test_max_clients(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink(max_clients=2)
        first = await connect(nursery, sink)
        second = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        third = await connect(nursery, sink)
        with pytest.raises(ConnectionClosed) as info:
            await third.get_message()
        assert close_code(info.value) == 1013
        assert sink.metrics["rejected_max_clients"] == 1
        await first.aclose()
        await sink.wait_for_clients(1)
        fourth = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        await inbox.put([kline()])
        assert (await recv(second))["data_type"] == "klines"
        assert (await recv(fourth))["data_type"] == "klines"


async def test_send_timeout_disconnects_a_stuck_client(start_sink: StartSink, nursery,
                                                       autojump_clock) -> None:
    with trio.fail_after(300):
        sink, inbox = await start_sink(max_dropped=10**9, send_timeout=5, ping_interval=0)
        stalled = await stalled_client(sink)
        await sink.wait_for_clients(1)
        start = trio.current_time()
        # One big message is enough to block on a 4 KiB receive buffer.
        await inbox.put([trade("BTCUSDT", i) for i in range(50_000)])
        await sink.wait_for_clients(0)
        assert 5 <= trio.current_time() - start < 6
        assert sink.metrics["slow_client_disconnects"] == 1
        stalled.close()


async def test_client_that_never_answers_pings_is_dropped(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    with trio.fail_after(300):
        sink, _ = await start_sink(ping_interval=20)
        live = await connect(nursery, sink)  # trio-websocket answers pings by itself
        dead = await stalled_client(sink)  # never reads, so never answers
        await sink.wait_for_clients(2)
        start = trio.current_time()
        await sink.wait_for_clients(1)
        assert trio.current_time() - start == pytest.approx(40, abs=1)
        assert sink.metrics["ping_timeouts"] == 1
        await trio.sleep(200)
        assert len(sink.clients) == 1  # the live client answered every ping
        assert not live.closed
        dead.close()


async def test_graceful_shutdown_flushes_then_closes_with_1001(nursery) -> None:
    with trio.fail_after(20):
        sink = make_sink()
        inbox = Inbox("ws")
        done = trio.Event()

        async def run_sink(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await sink.run(inbox, task_status=task_status)
            done.set()

        await nursery.start(run_sink)
        clients = [await connect(nursery, sink) for _ in range(3)]
        await sink.wait_for_clients(3)
        for b in range(50):
            await inbox.put([trade("BTCUSDT", b)])
        inbox.close()
        for ws in clients:
            got = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    got.extend((await recv(ws))["data"])
            assert [t["i"] for t in got] == [f"t{b}" for b in range(50)]
            assert close_code(info.value) == 1001
        await done.wait()
        with pytest.raises(OSError):  # no longer listening
            await trio.open_tcp_stream("127.0.0.1", sink.port or 0)


async def test_shutdown_is_bounded_with_a_stuck_client(nursery, autojump_clock) -> None:
    with trio.fail_after(300):
        sink = make_sink(shutdown_timeout=5, send_timeout=60, max_dropped=10**9, ping_interval=0)
        inbox = Inbox("ws")
        done = trio.Event()

        async def run_sink(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await sink.run(inbox, task_status=task_status)
            done.set()

        await nursery.start(run_sink)
        stalled = await stalled_client(sink)
        await sink.wait_for_clients(1)
        await inbox.put([trade("BTCUSDT", i) for i in range(50_000)])
        await trio.sleep(1)
        start = trio.current_time()
        inbox.close()
        await done.wait()
        assert trio.current_time() - start == pytest.approx(5, abs=0.5)
        stalled.close()
