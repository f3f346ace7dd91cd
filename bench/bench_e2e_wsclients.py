"""WebSocket clients of the realistic pipeline: ``--clients`` connections to the streamer's
websocket sink, each reading and discarding everything (no subscription: all data).

Its own process, so the clients' CPU is not counted in the streamer's. Prints
``{"event":"ready"}`` once every client is connected, then reads until killed and prints
nothing else (the streamer child stops it by pid).

    python bench/bench_e2e_wsclients.py --url ws://127.0.0.1:PORT/ --clients 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def client(url: str, connected: asyncio.Event, counter: list[int]) -> None:
    async with connect(url, max_size=None, compression=None) as ws:
        counter[0] += 1
        if counter[0] == counter[1]:
            connected.set()
        async for _ in ws:
            pass


async def main(url: str, n: int) -> None:
    connected = asyncio.Event()
    counter = [0, n]
    tasks = [asyncio.create_task(client(url, connected, counter)) for _ in range(n)]
    await asyncio.wait_for(connected.wait(), 30)
    sys.stdout.write(json.dumps({"event": "ready", "clients": n}) + "\n")
    sys.stdout.flush()
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, default=10)
    args = p.parse_args()
    asyncio.run(main(args.url, args.clients))
