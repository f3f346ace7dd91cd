"""The state of the fake (markets, connections, subscriptions, options) and the small helpers
every part of it uses; :class:`~streamer_bybit.simulator.server.FakeBybit` builds on it.

Also here: the record of when trades were pushed, which lets REST recent-trade lag the
WebSocket by ``rest_trade_lag``.
"""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from streamer.clock import now_ms

from . import categories as cats
from .books import BookFeed
from .connection import ws_frame
from .market import Instrument

if TYPE_CHECKING:
    from .connection import Connection

_dumps = msgspec.json.encode
PACINGS = ("batched", "even")


class FakeState:
    """What the fake knows and its options; ``FakeBybit`` adds what it does with them."""

    def __init__(
        self,
        linear_symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"),
        spot_symbols: Iterable[str] = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"),
        seed: int = 1,
        ssl_context=None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        one_record_per_message: bool = True,
        omit_optional_trade_fields: bool = False,
        history_limit: int | None = None,
        stamp: bool = False,
        rest_rate_limit: tuple[int, float] | None = None,
        non_trading_instruments: bool = True,
        rest_trade_lag: float | tuple[float, float] = 0.0,
        rest_delay: float = 0.0,
        pacing: str = "batched",
        full_books: bool = False,
    ) -> None:
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}")
        #: How ``run_market`` spaces its messages at a fixed rate (see its doc).
        self.pacing = pacing
        self._rng = random.Random(seed)
        self._lag_rng = random.Random(seed * 7919 + 1)
        self._rest_trade_lag: float | tuple[float, float] = 0.0
        self._track_pushes = False
        self.rest_delay = rest_delay
        self.rest_in_flight = 0  # REST requests being answered now (and the most at once)
        self.rest_in_flight_max = 0
        self.ssl_context = ssl_context
        self.host = host
        self._want_port = port
        self.port: int | None = None
        self.one_record_per_message = one_record_per_message
        self.omit_optional_trade_fields = omit_optional_trade_fields
        self.history_limit = history_limit
        self.stamp = stamp
        self.rest_rate_limit = rest_rate_limit  # e.g. (600, 5.0): HTTP 403 + retCode 10006
        self.markets: dict[str, dict[str, Instrument]] = {
            "linear": {}, "spot": {}, "inverse": {}, "option": {}}
        for cat, syms in (("linear", linear_symbols), ("spot", spot_symbols)):
            for s in syms:
                self.add_symbol(cat, s)
        if non_trading_instruments:
            self.add_symbol("linear", "NEWCOINUSDT", status="PreLaunch")
            self.add_symbol("linear", "OLDCOINUSDT", status="Closed")
            self.add_symbol("spot", "OLDCOINUSDT", status="Closed")
        self.connections: list[Connection] = []
        self.total_connections_opened = 0
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        #: REST paths answered only after this many more seconds (one slow endpoint).
        self.rest_path_delay: dict[str, float] = {}
        #: REST paths answered with HTTP 503 (a failing endpoint).
        self.rest_failing: set[str] = set()
        #: REST paths whose next requests are answered, one each, with these raw bodies.
        self.rest_bodies: dict[str, list[bytes]] = {}
        self.refused_topics: set[str] = set()
        #: Every liquidation made so far (``liquidations.liquidate``), with its category.
        self.liquidations: list[tuple[str, dict[str, Any]]] = []
        #: Option acks without the request's req_id (Bybit's docs show them both ways).
        self.option_acks_without_req_id = False
        self.ignore_pings = False
        self.reachable = True
        self._idle_timeout: float | None = 600.0
        self._paused: set[tuple[str, str]] = set()
        self._subs: dict[tuple[str, str], list[Connection]] = collections.defaultdict(list)
        self._sub_changed = trio.lowlevel.ParkingLot()
        self._kline_subs: collections.Counter[tuple[str, str]] = collections.Counter()
        #: The order books (simulator/books.py): ``push_book`` sends their messages.
        self.books = BookFeed(seed, self._book_grid, full=full_books)
        self._serve_scope: trio.CancelScope | None = None
        self._rest_times: collections.deque[float] = collections.deque()
        self.rest_trade_lag = rest_trade_lag

    # ------------------------------------------------------------------ setup / urls
    def add_symbol(self, category: str, symbol: str, status: str = "Trading") -> Instrument:
        inst = Instrument(category, symbol, self._rng, status)
        cats.setup_instrument(inst)
        if self.history_limit is not None:
            inst.history = collections.deque(maxlen=self.history_limit)
        if getattr(self, "_track_pushes", False):
            inst.pushes.append((-math.inf, 0))
        self.markets[category][symbol] = inst
        return inst

    @property
    def rest_trade_lag(self) -> float | tuple[float, float]:
        """Seconds REST recent-trade lags the WebSocket: a number, or ``(low, high)``."""
        return self._rest_trade_lag

    @rest_trade_lag.setter
    def rest_trade_lag(self, value: float | tuple[float, float]) -> None:
        lo, hi = value if isinstance(value, tuple) else (value, value)
        if not 0 <= lo <= hi:
            raise ValueError(f"rest_trade_lag must be >= 0 (low <= high), got {value!r}")
        self._rest_trade_lag = value
        if hi > 0 and not self._track_pushes:
            self._track_pushes = True
            for market in self.markets.values():
                for inst in market.values():
                    inst.pushes.append((-math.inf, inst.appended))

    def _lag(self) -> float:
        lag = self._rest_trade_lag
        if isinstance(lag, tuple):
            return lag[0] + self._lag_rng.random() * (lag[1] - lag[0])
        return lag

    def _note_push(self, inst: Instrument, n: int) -> None:
        """``n`` trades were appended to ``inst``'s history (and pushed) now."""
        inst.appended += n
        if self._track_pushes:
            pushes = inst.pushes
            now = trio.current_time()
            pushes.append((now, inst.appended))
            # Keep one push at or before the oldest cutoff a request can ask for.
            lag = self._rest_trade_lag
            oldest = now - (lag[1] if isinstance(lag, tuple) else lag)
            while len(pushes) > 2 and pushes[1][0] <= oldest:
                pushes.popleft()

    def _visible(self, inst: Instrument) -> int:
        """How many of ``inst``'s trades (counted from the first) REST lists now."""
        if not self._track_pushes:
            return inst.appended
        lag = self._lag()
        if lag <= 0:
            return inst.appended
        cutoff = trio.current_time() - lag
        visible = 0
        for at, count in inst.pushes:
            if at > cutoff:
                break
            visible = count
        return visible

    def _book_grid(self, category: str, symbol: str) -> tuple[int, int, int] | None:
        """Where a new book of ``symbol`` sits: at its last price, a level every random-walk
        step, in its price decimals (None: a symbol the fake does not trade)."""
        inst = self.markets.get(category, {}).get(symbol)
        if inst is None:
            return None
        step = inst.step()
        return inst.price // step, step, inst.pd

    def _inst(self, category: str, symbol: str) -> Instrument:
        try:
            return self.markets[category][symbol]
        except KeyError:
            raise KeyError(f"unknown {category} symbol {symbol!r}") from None

    @property
    def _scheme(self) -> tuple[str, str]:
        return ("wss", "https") if self.ssl_context is not None else ("ws", "http")

    def ws_url(self, category: str) -> str:
        return f"{self._scheme[0]}://{self.host}:{self.port}/v5/public/{category}"

    @property
    def rest_url(self) -> str:
        return f"{self._scheme[1]}://{self.host}:{self.port}"

    @property
    def idle_timeout(self) -> float | None:
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, value: float | None) -> None:
        self._idle_timeout = value
        for c in self.connections:
            c.idle_timeout_changed()

    def connection_count(self, category: str | None = None) -> int:
        return sum(1 for c in self.connections if category is None or c.category == category)

    # ------------------------------------------------------------------ publishing helpers
    def _msg_ts(self) -> int:
        return time.time_ns() // 1_000_000 if self.stamp else now_ms()

    def _publish(self, category: str, topic: str, payload: dict) -> None:
        subs = self._subs.get((category, topic))
        if not subs or (category, topic) in self._paused:
            return
        frame = ws_frame(_dumps(payload))
        for c in subs:
            c.enqueue(frame)

    def push_book(self, category: str, topic: str, *, unchanged: bool = False) -> None:
        """One push of ``topic``'s book to its subscribers (a fault injected with
        ``books.inject`` is taken by it; ``unchanged``: see ``BookFeed.push``). With
        ``stamp`` each message's ``seq`` is the wall-clock microsecond it was built at."""
        for payload in self.books.push(category, topic, self._msg_ts(), unchanged=unchanged):
            if self.stamp:
                payload["data"]["seq"] = time.time_ns() // 1000
            self._publish(category, topic, payload)

    def _ticker_frame(self, inst: Instrument, snapshot: bool, fields: dict | None) -> bytes:
        inst.cs += 1
        data = dict(inst.ticker) if snapshot else {"symbol": inst.symbol, **(fields or {})}
        return ws_frame(_dumps({"topic": "tickers." + inst.symbol,
                                "type": "snapshot" if snapshot else "delta",
                                "data": data, "cs": inst.cs, "ts": self._msg_ts()}))

