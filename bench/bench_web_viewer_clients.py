"""Browser-like viewers of the web view's feed: ``--viewers`` WebSocket connections that
speak to the websocket sink as the page's app.js does.

Each one logs in with its first message, asks for batches (``{"op": "batch", "latest":
["ticker"]}``: everything due in one write at most every batch_interval, only the latest
ticker per symbol in it), subscribes to every symbol's tickers (only the three fields the
page reads: ``"fields"``) and klines, asks for the status pushed once a second
(``{"op": "status", "push": true}``), and on the first symbol it discovers (from a ticker or
a kline, as the page does) unsubscribes from klines and trades and subscribes to that
symbol's klines and trades (the three trade fields the page shows).
Unlike the page it decodes only what it needs (messages until it picked its symbol, then
trades; msgspec): what the streamer spends does not depend on it, and the CPU it saves is
left to the simulator and the streamer. Each viewer connects from its own loopback address
(127.0.0.2 up), as browsers on different machines would, and connects again after a refusal
with the page's back-off (past ``max_unauthenticated`` the sink refuses with 1013).

With ``--stalled N`` the last N viewers stop reading once subscribed (a frozen tab): the
sink must cut them without touching the others. They subscribe to every symbol's trades
(the page's feed before a symbol is picked, plus all trades), so their socket fills
within seconds at the bench's rates.

Prints ``{"event":"ready"}`` once every viewer has picked its symbol. A line
``report A B`` on stdin (A, B: wall-clock ms) answers one JSON line, once every reading
viewer has read a trade of its symbol with ``T`` >= B (30 s at most): per viewer, the
trades of its symbol with ``T`` in [A, B) and whether its connection was closed. Its own
process, so its CPU is not the streamer's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RETRIES = 8
decode = msgspec.json.Decoder().decode
CATCH_UP_S = 30.0
#: The ticker fields the page reads (app.js TICKER_FIELDS).
TICKER_FIELDS = ["bid1Price", "ask1Price", "lastPrice"]
#: The trade fields the page shows (app.js TRADE_FIELDS; the sink adds "s" and "T").
TRADE_FIELDS = ["S", "p", "v"]


class Viewer:
    def __init__(self, index: int, stalled: bool) -> None:
        self.index = index
        self.stalled = stalled
        self.selected: str | None = None
        self.picked = asyncio.Event()
        self.closed = False
        self.close_code: int | None = None
        #: (symbol, T // 1000) -> trades received
        self.trades: collections.Counter[tuple[str, int]] = collections.Counter()
        #: The latest T (ms) of a trade of its symbol it read.
        self.latest_ms = 0
        self.messages = 0

    async def run(self, url: str, user: str, key: str) -> None:
        """Connect, and as the page does, connect again after a close before the login was
        answered (the sink refuses past max_unauthenticated: 1013), backing off 0.5 s, 1 s,
        2 s ... up to 10 s."""
        for retry in range(RETRIES):
            if await self._connection(url, user, key):
                break
            await asyncio.sleep(min(10.0, 0.5 * 2 ** retry))
        self.closed = True
        self.picked.set()

    async def _connection(self, url: str, user: str, key: str) -> bool:
        """One connection; False if it closed before the login was answered."""
        address = f"127.0.{2 + self.index // 250}.{2 + self.index % 250}"
        authenticated = False
        try:
            async with connect(url, max_size=None, compression=None,
                               local_addr=(address, 0), max_queue=16) as ws:
                await ws.send(json.dumps({"user": user, "key": key}))
                reply = json.loads(await ws.recv())
                if reply.get("status") != "authenticated":
                    raise RuntimeError(f"viewer {self.index}: login refused: {reply}")
                authenticated = True
                await ws.send(json.dumps({"op": "batch", "latest": ["ticker"]}))
                await ws.send(json.dumps({"op": "subscribe", "args": [
                    {"data_type": "ticker", "fields": TICKER_FIELDS}]}))
                await ws.send(json.dumps({"op": "subscribe", "args": [{"data_type": "klines"}]}))
                await ws.send(json.dumps({"op": "status", "push": True}))
                await self._read(ws)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
        return authenticated

    async def _read(self, ws: Any) -> None:
        async for raw in ws:
            if self.selected is not None and '"trades"' not in raw:
                continue
            message = decode(raw)
            self.messages += 1
            data_type = message.get("data_type")
            if data_type is None or not isinstance(message.get("data"), list):
                continue
            channel = message.get("channel")
            for item in message["data"]:
                key = f"{channel} {item.get('symbol') or item.get('s')}"
                if self.selected is None and data_type in ("ticker", "klines"):
                    await self._select(ws, key)
                    if self.stalled:
                        await ws.send(json.dumps({"op": "subscribe",
                                                  "args": [{"data_type": "trades"}]}))
                        self.picked.set()
                        await asyncio.Event().wait()  # never reads again
                    self.picked.set()
                elif data_type == "trades" and key == self.selected:
                    self.trades[(item["s"], item["T"] // 1000)] += 1
                    self.latest_ms = max(self.latest_ms, item["T"])

    async def _select(self, ws: Any, key: str) -> None:
        self.selected = key
        channel, symbol = key.split(" ")
        await ws.send(json.dumps({"op": "unsubscribe",
                                  "args": [{"data_type": "klines"}, {"data_type": "trades"}]}))
        await ws.send(json.dumps({"op": "subscribe", "args": [
            {"channel": channel, "data_type": "klines", "symbols": [symbol]},
            {"channel": channel, "data_type": "trades", "symbols": [symbol],
             "fields": TRADE_FIELDS}]}))

    def report(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        first, last = start_ms // 1000, end_ms // 1000
        symbol = self.selected.split(" ")[1] if self.selected else None
        trades = sum(n for (s, second), n in self.trades.items()
                     if s == symbol and first <= second < last)
        return {"viewer": self.index, "stalled": self.stalled, "symbol": symbol,
                "trades": trades, "closed": self.closed, "close_code": self.close_code,
                "messages": self.messages}


async def main(args: argparse.Namespace) -> None:
    viewers = [Viewer(i, i >= args.viewers - args.stalled) for i in range(args.viewers)]
    tasks = [asyncio.create_task(v.run(args.url, args.user, args.key)) for v in viewers]
    await asyncio.wait_for(asyncio.gather(*(v.picked.wait() for v in viewers)), 60)
    refused = [v.index for v in viewers if v.closed]
    sys.stdout.write(json.dumps({"event": "ready", "viewers": len(viewers),
                                 "closed": refused}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        words = line.split()
        if words[:1] == ["report"]:
            start_ms, end_ms = int(words[1]), int(words[2])
            # Every reading viewer has read past the window (messages still in its socket
            # when the window ended are counted), or CATCH_UP_S passed.
            deadline = loop.time() + CATCH_UP_S
            while loop.time() < deadline and any(
                    v.latest_ms < end_ms for v in viewers if not (v.stalled or v.closed)):
                await asyncio.sleep(0.05)
            sys.stdout.write(json.dumps({"event": "report", "viewers": [
                v.report(start_ms, end_ms) for v in viewers]}) + "\n")
            sys.stdout.flush()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--viewers", type=int, default=100)
    p.add_argument("--stalled", type=int, default=0)
    asyncio.run(main(p.parse_args()))
