"""A tiny fake of a made-up exchange (the one tests/plugin_dists/streamer-madeup speaks to):
a trio WebSocket server on 127.0.0.1 that plays a script to each listener, one part per
``release`` event set.

Nothing here looks like Bybit on purpose: integer trade ids, its own message shapes, its own
channel and ticker field names.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket


@attrs.define
class Deal:
    market: str
    id: int
    t: int
    px: str
    q: str
    side: str  # "b" | "s"

    def row(self) -> dict[str, Any]:
        return {"m": self.market, "id": self.id, "t": self.t, "px": self.px, "q": self.q,
                "side": self.side}


@attrs.define
class Quote:
    market: str
    t: int
    last: str
    index: str


@attrs.define
class MadeupExchange:
    #: The script: parts of deals, each sent as one message once its ``releases`` event is
    #: set, then the quotes. Fill it in before the first release.
    parts: list[list[Deal]] = attrs.field(factory=list)
    quotes: list[Quote] = attrs.field(factory=list)
    #: market -> its bars ([start, o, h, l, c, volume, turnover]) as history answers them.
    bars: dict[str, list[list[float]]] = attrs.field(factory=dict)
    #: The exchange's clock in the history answers (the bars stood so at this time).
    history_now: int = 0
    port: int = 0
    #: Set when a source has asked to listen; the script waits for ``releases``.
    listening: trio.Event = attrs.field(factory=trio.Event)
    releases: list[trio.Event] = attrs.field(factory=list)
    listens: list[dict[str, Any]] = attrs.field(factory=list)
    history_asks: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, self._handle, "127.0.0.1", 0, None)
            self.port = server.port
            task_status.started()

    async def _handle(self, request: WebSocketRequest) -> None:
        path = request.path
        ws = await request.accept()
        try:
            if path == "/stream":
                self.listens.append(json.loads(await ws.get_message()))
                self.listening.set()
                for i, release in enumerate(self.releases):
                    await release.wait()
                    await ws.send_message(json.dumps(
                        {"feed": "deals", "rows": [d.row() for d in self.parts[i]]}))
                for q in self.quotes:
                    await ws.send_message(json.dumps(
                        {"feed": "quotes", "m": q.market, "t": q.t, "last": q.last,
                         "index": q.index}))
            elif path == "/history":
                ask = json.loads(await ws.get_message())
                self.history_asks.append(ask)
                bars = [b for b in self.bars.get(ask["market"], [])
                        if b[0] >= ask["from"]][: ask["n"]]
                await ws.send_message(json.dumps({"bars": bars, "now": self.history_now}))
            while True:
                await ws.get_message()  # until the client goes
        except ConnectionClosed:
            return
