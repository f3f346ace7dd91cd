"""Bench: the websocket sink's RSS under three hostile clients, and whether a real client is
served meanwhile.

The sink runs in a child process (auth on, a snapshot of 4,600 symbols: ticker, price and a
kline each, a live trade every 20 ms); this process plays the clients on 127.0.0.x and reads
the child's RSS from /proc. Phases, one after the other:

1. reply flood: one authenticated raw client that never reads sends large valid subscribe
   requests (~60 kB each, 2 x 1,900 symbols) as fast as the server takes them (400 at most);
2. subscription flood: one client that reads everything sends 100 subscribes of 4,600
   symbols it never saw (3 args);
3. 100 sockets (25 source addresses x 4) complete the WebSocket handshake and never
   authenticate, held for 5 s.

Throughout, a real client subscribed to trades counts the live trades it receives and
measures its ping round trip. Reports per phase: RSS before, peak, after; trades the real
client got; worst ping round trip; whether a new user (basic auth) was admitted while the
hostile client was at its worst (flood sent, sockets held).

    .venv/bin/python bench/bench_websocket_hostile.py [--server-path DIR]

``--server-path`` puts DIR first on the child's import path (e.g. another checkout's
plugins/websocket/src) to compare the same hostile clients against other code.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import subprocess
import sys
import time
from typing import Any

import msgspec
import trio
from trio_websocket import WebSocketConnection, connect_websocket_url

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

KEY_ENV = "STREAMER_BENCH_WS_KEY"
KEY = "bench-key"
AUTH = [(b"Authorization", b"Basic " + base64.b64encode(f"alice:{KEY}".encode()))]
SYMBOLS = [f"S{i:04d}USDT" for i in range(4600)]
PHASE_LIMIT = 20.0  # seconds a hostile phase may take at most


# -- the server (child process) ----------------------------------------------------------

async def serve() -> None:
    from websocket.helpers import kline, price, ticker, trade

    from streamer import Context, Inbox
    from streamer._metrics import Metrics
    from streamer_websocket.config import WebSocketConfig
    from streamer_websocket.sink import WebSocketSink

    config = WebSocketConfig(port=0, auth_user="alice", auth_key_env=KEY_ENV, send_timeout=30,
                             auth_timeout=30)
    sink = WebSocketSink(config, Context(name="bench", type="websocket",
                                         logger=logging.getLogger("bench"), metrics=Metrics()))
    inbox = Inbox("bench", maxsize=100, overflow="block")
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run, inbox)
        for start in range(0, len(SYMBOLS), 500):
            chunk = SYMBOLS[start:start + 500]
            await inbox.put([ticker(s) for s in chunk] + [price(s) for s in chunk]
                            + [kline(s) for s in chunk])
        print(f"port {sink.port}", flush=True)
        i = 0
        while True:
            i += 1
            await inbox.put([trade("S0001USDT", i)])
            await trio.sleep(0.02)


# -- the clients (this process) ----------------------------------------------------------

def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class RealClient:
    """Counts live trades and measures ping round trips while a phase runs."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.trades = 0
        self.worst_rtt = 0.0
        self._pong = trio.Event()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ping)
            while True:
                message = msgspec.json.decode(await self.ws.get_message())
                if message.get("data_type") == "trades":
                    self.trades += len(message["data"])
                elif message == {"op": "pong"}:
                    self._pong.set()

    async def _ping(self) -> None:
        while True:
            self._pong = trio.Event()
            start = trio.current_time()
            await self.ws.send_message('{"op":"ping"}')
            await self._pong.wait()
            self.worst_rtt = max(self.worst_rtt, trio.current_time() - start)
            await trio.sleep(0.1)


async def user(nursery: trio.Nursery, url: str) -> WebSocketConnection:
    ws = await connect_websocket_url(nursery, url, extra_headers=AUTH, message_queue_size=10_000)
    await ws.send_message('{"op":"subscribe","args":[{"channel":"linear","data_type":"trades"}]}')
    while '"success"' not in (await ws.get_message()):
        pass
    return ws


async def admitted(url: str) -> bool:
    """Can a new authenticated user connect and get its ack right now?"""
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                ws = await user(nursery, url)
                await ws.aclose()
                nursery.cancel_scope.cancel()
        return True
    except Exception:
        return False


async def reply_flood(port: int, url: str) -> tuple[str, bool]:
    from websocket.helpers import client_frame, raw_handshake, send_all

    class Sink:  # what raw_handshake needs of a sink
        pass

    sink: Any = Sink()
    sink.port = port
    sock, response = await raw_handshake(sink, headers=AUTH)
    assert response.startswith(b"HTTP/1.1 101"), response
    symbols = SYMBOLS[:1900]
    frame = client_frame(msgspec.json.encode({"op": "subscribe", "args": [
        {"channel": "linear", "data_type": "ticker", "symbols": symbols},
        {"channel": "linear", "data_type": "price", "symbols": symbols}]}).decode())
    sent = 0
    for _ in range(400):
        if not await send_all(sock, frame):
            break
        sent += 1
    new_user = await admitted(url)
    # Closed by the server, or still open: keep trying a small request for up to 10 s.
    closed = sent < 400
    ping = client_frame('{"op":"ping"}')
    with trio.move_on_after(10):
        while not closed:
            closed = not await send_all(sock, ping)
            await trio.sleep(0.2)
    sock.close()
    outcome = f"{sent} requests sent, {'closed by the server' if closed else 'still connected'}"
    return outcome, new_user


async def subscription_flood(url: str) -> tuple[str, bool]:
    refused = 0
    async with trio.open_nursery() as nursery:
        ws = await connect_websocket_url(nursery, url, extra_headers=AUTH,
                                         message_queue_size=100)
        for i in range(100):
            names = [f"F{i:03d}X{j:04d}" for j in range(4600)]
            await ws.send_message(msgspec.json.encode({"op": "subscribe", "args": [
                {"channel": "spot", "data_type": "klines", "symbols": names[:2000]},
                {"channel": "spot", "data_type": "price", "symbols": names[2000:4000]},
                {"channel": "spot", "data_type": "ticker", "symbols": names[4000:]}]}).decode())
            while True:
                reply = msgspec.json.decode(await ws.get_message())
                if "op" in reply:
                    refused += reply.get("success") is False
                    break
        new_user = await admitted(url)
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return f"100 subscribes, {refused} refused", new_user


async def unauthenticated(port: int, url: str) -> tuple[str, bool]:
    from websocket.helpers import raw_handshake

    class Sink:
        pass

    sink: Any = Sink()
    sink.port = port
    socks = []
    for i in range(100):
        sock, _ = await raw_handshake(sink, source=f"127.0.1.{1 + i % 25}")
        socks.append(sock)
    await trio.sleep(5)
    new_user = await admitted(url)
    alive = 0
    for sock in socks:
        # Nothing from the server within a moment: still held open (a refused one got a
        # 1013 close frame and EOF).
        with trio.move_on_after(0.01) as quiet:
            try:
                await sock.recv(1)
            except OSError:
                pass
        alive += quiet.cancelled_caught
        sock.close()
    return f"100 sockets, {alive} held open by the server after 5 s", new_user


async def main(server_path: str | None) -> None:
    env = dict(os.environ, **{KEY_ENV: KEY})
    if server_path:
        env["PYTHONPATH"] = os.pathsep.join([server_path, env.get("PYTHONPATH", "")])
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout is not None
        line = await trio.to_thread.run_sync(child.stdout.readline)
        port = int(line.split()[1])
        url = f"ws://127.0.0.1:{port}/"
        print(f"server pid {child.pid}, {url}, RSS at start {rss_mib(child.pid):.0f} MiB")
        print(f"{'phase':<20} {'RSS before':>10} {'peak':>7} {'after':>7} "
              f"{'trades':>7} {'worst ping':>10} {'new user':>8}  outcome")
        phases = [("reply flood", lambda: reply_flood(port, url)),
                  ("subscription flood", lambda: subscription_flood(url)),
                  ("100 unauthenticated", lambda: unauthenticated(port, url))]
        for name, phase in phases:
            async with trio.open_nursery() as nursery:
                real = RealClient(await user(nursery, url))
                nursery.start_soon(real.run)
                await trio.sleep(0.5)
                before = peak = rss_mib(child.pid)
                real.trades = 0
                real.worst_rtt = 0.0
                outcome, new_user = "timed out", False

                async def watch() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, rss_mib(child.pid))
                        await trio.sleep(0.05)

                nursery.start_soon(watch)
                started = time.monotonic()
                with trio.move_on_after(PHASE_LIMIT):
                    outcome, new_user = await phase()
                took = time.monotonic() - started
                await trio.sleep(1)
                after = rss_mib(child.pid)
                print(f"{name:<20} {before:>9.0f}M {peak:>6.0f}M {after:>6.0f}M "
                      f"{real.trades:>7} {real.worst_rtt:>9.3f}s {new_user!s:>8}  "
                      f"{outcome} ({took:.1f} s)", flush=True)
                nursery.cancel_scope.cancel()
    finally:
        child.terminate()
        child.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server-path", help="prepend DIR to the server's import path")
    options = parser.parse_args()
    if options.serve:
        trio.run(serve)
    else:
        trio.run(main, options.server_path)
