"""A third-party source for a made-up exchange: ``madeup.exchange``.

Its exchange speaks nothing like Bybit: one WebSocket path ``/stream`` where a client says
``{"action": "listen", "markets": [...]}`` and then gets

- ``{"feed": "deals", "rows": [{"m": market, "id": <int>, "t": ms, "px": "1.5", "q": "2",
  "side": "b"|"s"}, ...]}``
- ``{"feed": "quotes", "m": market, "t": ms, "last": "1.5", "index": "1.4"}``

and a path ``/history`` answering one ``{"ask": "bars", "market", "width", "from", "n"}``
with ``{"bars": [[start, open, high, low, close, volume, turnover], ...], "now": ms}``.

The source maps deals onto :class:`streamer.Trade` (none of the optional fields: this
exchange has no tick direction, block trades or sequence numbers), quotes onto
:class:`streamer.Ticker` with the exchange's own field names, under a channel of its own
(``"futures"``), and offers its bars as :class:`streamer.history.History`.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from streamer import Context, Emit, Event, Ticker, Trade, hookimpl
from streamer.history import (
    Candles,
    HistoryCandle,
    HistoryError,
    HistoryUnavailable,
    RecentTrades,
)
from streamer.validators import channel_problem

_SIDES = {"b": "Buy", "s": "Sell"}


def _channel(_: Any, __: Any, value: str) -> None:
    problem = channel_problem(value)
    if problem is not None:
        raise ValueError(problem)


@attrs.define
class MadeupConfig:
    url: str = "ws://127.0.0.1:1"
    markets: list[str] = attrs.field(factory=lambda: ["ABC-PERP"])
    channel: str = attrs.field(default="futures", validator=_channel)


class MadeupHistory:
    """The exchange's bars, as :class:`streamer.history.History`."""

    candle_intervals = frozenset({1000})
    max_candles = 100

    def __init__(self, url: str, channel: str) -> None:
        self.url = url
        self.channel = channel

    async def candles(
        self, channel: str, symbol: str, interval_ms: int, start_ms: int, *, limit: int
    ) -> Candles:
        if channel != self.channel or interval_ms not in self.candle_intervals:
            raise HistoryUnavailable(f"no {interval_ms} ms bars of {channel!r}")
        ask = {"ask": "bars", "market": symbol, "width": interval_ms, "from": start_ms,
               "n": limit}
        try:
            async with open_websocket_url(self.url + "/history") as ws:
                await ws.send_message(json.dumps(ask))
                reply = json.loads(await ws.get_message())
        except (OSError, HandshakeError, ConnectionClosed) as exc:
            raise HistoryError(f"{type(exc).__name__}: {exc}") from None
        rows = tuple(HistoryCandle(int(b[0]), *(float(x) for x in b[1:7]))
                     for b in reply["bars"])
        return Candles(interval_ms, rows, int(reply["now"]))

    async def trades_since(self, channel: str, symbol: str, since_ms: int) -> RecentTrades:
        raise HistoryUnavailable("the made-up exchange keeps no trades")


class MadeupSource:
    def __init__(self, config: MadeupConfig, context: Context) -> None:
        self.config = config
        self.history = MadeupHistory(config.url, config.channel)

    def events(self, message: dict[str, Any]) -> list[Event]:
        channel = self.config.channel
        if message.get("feed") == "deals":
            return [Trade(channel, r["m"], r["t"], _SIDES[r["side"]], r["px"], r["q"],
                          str(r["id"])) for r in message["rows"]]
        if message.get("feed") == "quotes":
            fields = {"symbol": message["m"], "last": float(message["last"]),
                      "index": float(message["index"])}
            return [Ticker(channel, message["m"], message["t"], fields)]
        return []

    async def run(self, emit: Emit, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(self.config.url + "/stream") as ws:
            await ws.send_message(json.dumps({"action": "listen",
                                              "markets": self.config.markets}))
            task_status.started()
            while True:
                batch = self.events(json.loads(await ws.get_message()))
                if batch:
                    await emit(batch)


@hookimpl
def streamer_register_sources(register: Any) -> None:
    register("madeup.exchange", MadeupConfig, MadeupSource)
