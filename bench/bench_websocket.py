"""Bench: events/s the websocket sink delivers to 1, 10 and 100 clients.

The sink runs in this process; the clients run in a child process (trio-websocket, one task
per connection, counting the trades in each message with ``str.count`` rather than
decoding it, so the child's CPU limits the figures as little as possible), so server and
clients do not share one core's event loop. The producer puts batches of ``--batch`` trades
into the sink's inbox as fast as the blocking inbox lets it; per-client queues are large so
nothing is dropped, and a run ends when every client has received every trade.
"Delivered" = trades received summed over all clients / wall time from the first put to the
last client done.

    .venv/bin/python bench/bench_websocket.py [--clients 1 10 100] [--trades N] [--batch N]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

import trio
from trio_websocket import open_websocket_url

from streamer import Context, Inbox, Trade
from streamer._metrics import Metrics
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.sink import WebSocketSink


async def client_process(url: str, clients: int, expected: int) -> None:
    """Child: connect ``clients`` times, say "ready", count trades until ``expected`` each."""
    messages = 0

    async def one(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal messages
        async with open_websocket_url(url, message_queue_size=10_000) as ws:
            task_status.started()
            got = 0
            while got < expected:
                message = await ws.get_message()
                assert isinstance(message, str)  # text frames, as browsers need
                got += message.count('"T":')
                messages += 1

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            await nursery.start(one)
        print("ready", flush=True)
    print(f"done {messages}", flush=True)


async def run_once(clients: int, trades: int, batch: int) -> tuple[float, int, int]:
    config = WebSocketConfig(port=0, max_clients=clients, client_queue_size=1_000_000,
                             max_dropped=1_000_000, ping_interval=0)
    context = Context(name="bench", type="websocket", logger=logging.getLogger("bench"),
                      metrics=Metrics())
    sink = WebSocketSink(config, context)
    inbox = Inbox("bench", maxsize=100, overflow="block")
    batches = [
        [Trade(channel="linear", symbol="BTCUSDT", ts=1_700_000_000_000 + i, side="Buy",
               price="65000.5", size="0.001", trade_id=f"{b}-{i}", tick_direction="PlusTick",
               block_trade=False, rpi=False, seq=b)
         for i in range(batch)]
        for b in range(trades // batch)
    ]
    total = len(batches) * batch
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        proc = await trio.lowlevel.open_process(
            [sys.executable, __file__, "--child", sink.url, str(clients), str(total)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        buffer = b""
        while b"ready\n" not in buffer:
            chunk = await proc.stdout.receive_some()
            if not chunk:
                raise RuntimeError("client process died")
            buffer += chunk
        await sink.wait_for_clients(clients)
        start = time.perf_counter()
        for b in batches:
            await inbox.put(b)
            await trio.sleep(0)
        while b"done" not in buffer:
            buffer += await proc.stdout.receive_some()
        await proc.wait()
        elapsed = time.perf_counter() - start
        messages = int(buffer.split(b"done ")[1].split()[0])
        dropped = context.metrics["dropped_envelopes"]
        nursery.cancel_scope.cancel()
    assert dropped == 0, dropped
    return elapsed, total * clients, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--trades", type=int, default=200_000, help="trades per run")
    parser.add_argument("--batch", type=int, default=50, help="trades per batch")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, clients, expected = args.child
        trio.run(client_process, url, int(clients), int(expected))
        return
    print(f"{args.trades} trades in batches of {args.batch}; clients in a child process")
    print(f"{'clients':>7} {'seconds':>8} {'delivered events/s':>19} {'messages sent':>14}")
    for clients in args.clients:
        elapsed, delivered, messages = trio.run(run_once, clients, args.trades, args.batch)
        print(f"{clients:>7} {elapsed:>8.2f} {delivered / elapsed:>19,.0f} {messages:>14,}")


if __name__ == "__main__":
    main()
