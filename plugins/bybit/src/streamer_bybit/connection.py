"""One Bybit WebSocket connection's lifecycle: connect, subscribe, read, heartbeat, reconnect.

A connection owns a fixed list of topics. Each session (one socket) runs three tasks in a
nursery: the reader (the only task that receives; one ``emit`` per socket read), the
heartbeat (ping every ``ping_interval``; the connection is stale when nothing at all arrived
for ``stale_timeout``) and the subscriber (sends subscribe requests in chunks, checks every
ack, then recovers trades missed while the previous session was down). The first task to hit
a problem records the cause and cancels the session; the connection then backs off and
starts a new session. Causes are recorded rather than raised so that one clean log line per
reconnect comes out, instead of an ExceptionGroup.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterable
from typing import Any

import attrs
import msgspec
import trio

from streamer.api import Emit, StreamGap
from streamer.backoff import Backoff
from streamer.clock import now_ms
from streamer.events import Event, Trade
from streamer.http import HttpError
from streamer.logs import RateLimitedLog
from streamer.metrics import Metrics
from streamer_bybit.capture import CaptureTap
from streamer_bybit.decode import Message, MessageDecoder
from streamer_bybit.rest import RECENT_TRADES_MAX, BybitRest, BybitRestError
from streamer_bybit.tickers import PriceTracker, TickerBook
from streamer_bybit.transport import HandshakeError, WebSocket, WebSocketClosed

#: Errors that mean "the network or the server is not there right now": log and retry.
NETWORK_ERRORS = (OSError, trio.TooSlowError, HandshakeError, WebSocketClosed, ssl.SSLError)
REST_ERRORS = (OSError, trio.TooSlowError, HttpError, BybitRestError, ssl.SSLError)

_NAMED_TOPIC = re.compile(r"topic:(\S+)|\[([^\]]+)\]")
_encode = msgspec.json.Encoder().encode


class StaleConnection(Exception):
    """Nothing arrived (no data, no pong) for ``stale_timeout`` seconds."""


class AckTimeout(Exception):
    """A subscribe request got no answer in time."""


def named_topic(ret_msg: str) -> str | None:
    """The topic Bybit names in an error (``...,topic:T`` linear, ``[T]`` spot)."""
    m = _NAMED_TOPIC.search(ret_msg)
    if m is None:
        return None
    return m.group(1) or m.group(2)


@attrs.define(frozen=True)
class ConnectionSettings:
    url: str
    channel: str  # "linear" | "spot", also the REST category
    ping_interval: float = 20.0
    stale_timeout: float = 30.0
    ack_timeout: float = 10.0
    connect_timeout: float = 10.0
    reconnect_max_delay: float = 30.0
    subscribe_chunk: int = 10
    recover_gaps: bool = True
    ssl_context: ssl.SSLContext | None = None


class ConnectPacer:
    """Spaces connection attempts of one source: ``rate`` per second after a ``burst``.

    Bybit allows 500 connections per 5 minutes per IP; a reconnect storm of a large pool
    must not exceed it. Slots are reserved before sleeping, so waiters go in order.
    """

    def __init__(self, rate: float, burst: int = 5) -> None:
        self.interval = 1.0 / rate
        self.burst = burst
        self._tat = -float("inf")

    async def wait(self) -> None:
        now = trio.current_time()
        tat = max(self._tat, now)
        allowed_at = tat - (self.burst - 1) * self.interval
        self._tat = tat + self.interval
        if allowed_at > now:
            await trio.sleep_until(allowed_at)


class TradeWindow:
    """What gap recovery must know of the trades emitted for one symbol: the newest trade
    time and the ids of the trades stamped exactly then.

    After a reconnect, REST recent-trade rows newer than ``newest_ts`` are new; rows at
    ``newest_ts`` are new unless their id is here. Older trades cannot collide, so nothing
    else is kept: memory per symbol is the trades of one millisecond, not a history.
    Assumes the trades of one message come oldest first (as Bybit sends them).
    """

    __slots__ = ("_ids", "newest_ts")

    def __init__(self) -> None:
        self.newest_ts = -1
        self._ids: set[str] = set()

    def add(self, trades: list[Trade]) -> None:
        """Note ``trades`` (non-empty, one message or one REST recovery, oldest first)."""
        last = trades[-1]
        ts = last.ts
        if ts > self.newest_ts:
            self.newest_ts = ts
            ids = self._ids = {last.trade_id}
        elif ts == self.newest_ts:
            ids = self._ids
            ids.add(last.trade_id)
        else:
            return  # recovered trades older than live ones already noted
        i = len(trades) - 2
        while i >= 0 and trades[i].ts == ts:  # only the newest millisecond's trades
            ids.add(trades[i].trade_id)
            i -= 1

    def ids(self) -> frozenset[str]:
        """The ids of the trades stamped ``newest_ts`` (a snapshot)."""
        return frozenset(self._ids)


#: What recovery needs of a symbol's window at the reconnect: (newest_ts, ids stamped then).
RecoveryMark = tuple[int, frozenset[str]]


def trade_from_rest(channel: str, row: dict[str, Any]) -> Trade:
    seq = row.get("seq")
    return Trade(
        channel,
        str(row["symbol"]),
        int(row["time"]),
        str(row["side"]),
        str(row["price"]),
        str(row["size"]),
        str(row["execId"]),
        None,
        row.get("isBlockTrade"),
        row.get("isRPITrade"),
        int(seq) if seq not in (None, "") else None,
    )


class BybitConnection:
    """Streams ``topics`` over one WebSocket, reconnecting forever until cancelled."""

    #: Set by the source when ``capture_dir`` is configured: sees every socket read.
    capture: CaptureTap | None = None

    def __init__(
        self,
        index: int,
        topics: Iterable[str],
        settings: ConnectionSettings,
        emit: Emit,
        *,
        logger: logging.Logger,
        metrics: Metrics,
        pacer: ConnectPacer,
        rest: BybitRest | None,
        emit_tickers: bool,
        ticker_price_field: str | None,
        price_from_trades: bool,
        prices: PriceTracker,
        name: str = "bybit",
    ) -> None:
        self.index = index
        self.topics = list(dict.fromkeys(topics))
        self.settings = settings
        self.emit = emit
        self.logger = logger
        self.metrics = metrics
        self.pacer = pacer
        self.rest = rest
        self.name = f"{name}#{index}"
        self.log = RateLimitedLog(logger)
        self.refused: dict[str, str] = {}
        self.book = TickerBook(
            settings.channel, prices, emit_tickers=emit_tickers, price_field=ticker_price_field
        )
        self.windows: dict[str, TradeWindow] = {}
        self.decoder = MessageDecoder(
            settings.channel,
            metrics,
            self.log,
            self.book,
            prices,
            price_from_trades=price_from_trades,
            on_trades=self._record_trades if settings.recover_gaps else None,
        )
        self.backoff = Backoff(initial=0.5, maximum=max(0.5, settings.reconnect_max_delay))
        self.sessions = 0  # sessions that reached "subscribed"
        self.reconnects = 0
        self.subscribed = trio.Event()  # set whenever the current session is subscribed
        self._acks: dict[str, list[Any]] = {}
        self._req = 0
        self._last_activity = 0.0
        self._cause: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._holding = False
        self._held: list[Event] = []
        #: Ids of held live trades by symbol, indexed up to ``_held_indexed`` (recovery only).
        self._held_ids: dict[str, set[str]] = {}
        self._held_indexed = 0
        self._binary_seen = 0
        self._ws: WebSocket | None = None  # the current session's socket
        #: Symbols whose trades this connection carries (what a stream gap concerns).
        self.trade_symbols = tuple(
            t.partition(".")[2] for t in self.topics if t.startswith("publicTrade.")
        )
        #: Newest trade time delivered before the connection was lost, while a gap is open.
        self._gap_since: int | None = None
        #: A trade gap could not be filled during the current recovery.
        self._gap_lost = False

    # -------------------------------------------------------------------- bookkeeping
    def _record_trades(self, symbol: str, trades: list[Trade]) -> None:
        window = self.windows.get(symbol)
        if window is None:
            window = self.windows[symbol] = TradeWindow()
        window.add(trades)

    def _fail(self, cause: BaseException) -> None:
        if self._cause is None:
            self._cause = cause
        if self._scope is not None:
            self._scope.cancel()

    @property
    def active_topics(self) -> list[str]:
        return [t for t in self.topics if t not in self.refused]

    # -------------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stream forever; ``started()`` once the first session is subscribed."""
        url = self.settings.url
        while True:
            await self.pacer.wait()
            try:
                with trio.fail_after(self.settings.connect_timeout):
                    ws = await WebSocket.connect(url, ssl_context=self.settings.ssl_context)
            except NETWORK_ERRORS as exc:
                delay = self.backoff.next()
                self.metrics.inc("connect_failures")
                self.logger.warning(
                    "%s: cannot connect to %s: %s; next retry in %.1f s",
                    self.name,
                    url,
                    _describe(exc),
                    delay,
                )
                await trio.sleep(delay)
                continue
            started_at = trio.current_time()
            try:
                await self._session(ws, task_status)
            finally:
                with trio.CancelScope(shield=True):
                    await ws.aclose()
                    if self._held:  # events read before the session ended still count
                        held, self._held, self._holding = self._held, [], False
                        with trio.move_on_after(5):
                            await self.emit(held)
            if self.sessions > 0:
                task_status = trio.TASK_STATUS_IGNORED
                await self._open_gap()
            cause = self._cause
            self._cause = None
            # A session that lived long was healthy: start the backoff over. A server that
            # accepts and closes at once keeps backing off (a clean close is no exception).
            if trio.current_time() - started_at >= max(self.settings.stale_timeout, 10.0):
                self.backoff.reset()
            delay = self.backoff.next()
            self.reconnects += 1
            self.metrics.inc("reconnects")
            self.logger.warning(
                "%s: connection to %s lost (%s); reconnecting in %.1f s",
                self.name,
                url,
                _describe(cause) if cause is not None else "unknown cause",
                delay,
            )
            await trio.sleep(delay)

    async def _session(self, ws: WebSocket, task_status: trio.TaskStatus[None]) -> None:
        self._cause = None
        self._acks.clear()
        self._binary_seen = 0
        self._last_activity = trio.current_time()
        self.subscribed = trio.Event()
        self._ws = ws
        self.book.reset()  # a fresh snapshot follows the subscribe
        # After a reconnect, live trades wait until the missed ones are recovered.
        recover_marks: dict[str, RecoveryMark] = {}
        if self.sessions > 0 and self.settings.recover_gaps and self.rest is not None:
            # A snapshot: live trades read from now on move the windows on.
            recover_marks = {s: (w.newest_ts, w.ids()) for s, w in self.windows.items()}
            self._holding = bool(recover_marks)
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            nursery.start_soon(self._heartbeat, ws)
            nursery.start_soon(self._subscriber, ws, task_status, recover_marks)
            await self._reader(ws)
        self._scope = None
        self._ws = None

    async def _reader(self, ws: WebSocket) -> None:
        decode = self.decoder.decode
        emit = self.emit
        while True:
            try:
                payloads = await ws.receive()
            except WebSocketClosed as exc:
                self._fail(exc)
                return
            self._last_activity = trio.current_time()
            if self.capture is not None and payloads:
                self.capture.record(payloads, self._last_activity)
            if ws.binary_frames != self._binary_seen:
                self.metrics.inc("unexpected_binary", ws.binary_frames - self._binary_seen)
                self._binary_seen = ws.binary_frames
                self.log.warning("unexpected_binary", "%s: binary frame dropped", self.name)
            events: list[Event] = []
            for payload in payloads:
                reply = decode(payload, events)
                if reply is not None:
                    self._on_reply(reply)
            if events:
                if self._holding:
                    self._held.extend(events)
                else:
                    await emit(events)

    def _on_reply(self, reply: Message) -> None:
        if reply.op == "ping" or reply.ret_msg == "pong":
            return  # a pong: its arrival already counted as activity
        pending = self._acks.pop(reply.req_id, None) if reply.req_id else None
        if pending is not None:
            pending[1] = reply
            pending[0].set()
            return
        if reply.op == "unsubscribe" and reply.success:
            return
        self.metrics.inc("unexpected_reply")
        self.log.warning(
            "unexpected_reply",
            "%s: unexpected %r reply: success=%s ret_msg=%r",
            self.name,
            reply.op,
            reply.success,
            reply.ret_msg,
        )

    async def _heartbeat(self, ws: WebSocket) -> None:
        interval = self.settings.ping_interval
        stale = self.settings.stale_timeout
        next_ping = trio.current_time() + interval
        ping = _encode({"op": "ping"}).decode()
        while True:
            await trio.sleep_until(min(next_ping, self._last_activity + stale))
            now = trio.current_time()
            if now >= self._last_activity + stale:
                self.metrics.inc("stale")
                self._fail(StaleConnection(f"no data and no pong for {stale:g} s"))
                return
            if now >= next_ping:
                try:
                    await ws.send_text(ping)
                except WebSocketClosed as exc:
                    self._fail(exc)
                    return
                next_ping = now + interval

    # -------------------------------------------------------------------- subscribing
    async def _subscriber(
        self,
        ws: WebSocket,
        task_status: trio.TaskStatus[None],
        recover_marks: dict[str, RecoveryMark],
    ) -> None:
        topics = self.active_topics
        chunk = self.settings.subscribe_chunk
        try:
            for i in range(0, len(topics), chunk):
                await self._subscribe_batch(ws, topics[i : i + chunk])
        except (WebSocketClosed, AckTimeout) as exc:
            self._fail(exc)
            return
        self.subscribed.set()
        first = self.sessions == 0
        self.sessions += 1
        if first:
            task_status.started()
        else:
            self.logger.info("%s: resubscribed %d topics", self.name, len(self.active_topics))
        if self._holding:
            await self._recover(recover_marks)
        await self._close_gap()

    async def _request(self, ws: WebSocket, args: list[str]) -> Message:
        self._req += 1
        req_id = f"{self.index}.{self._req}"
        pending: list[Any] = [trio.Event(), None]
        self._acks[req_id] = pending
        await ws.send_text(_encode({"op": "subscribe", "args": args, "req_id": req_id}).decode())
        with trio.move_on_after(self.settings.ack_timeout):
            await pending[0].wait()
        self._acks.pop(req_id, None)
        if pending[1] is None:
            raise AckTimeout(
                f"no answer to a subscribe of {len(args)} topics in {self.settings.ack_timeout:g} s"
            )
        reply: Message = pending[1]
        return reply

    async def _subscribe_batch(self, ws: WebSocket, args: list[str]) -> None:
        """Subscribe ``args``; isolate and drop refused topics, keep the rest subscribed.

        Bybit refuses a whole request for one bad topic, so a refused request is bisected
        until the bad topic stands alone. "already subscribed" means that topic is fine, but
        the rest of its request was not subscribed: it is re-sent without it.
        """
        if not args:
            return
        reply = await self._request(ws, args)
        if reply.success:
            return
        msg = reply.ret_msg
        named = named_topic(msg)
        if "already subscribed" in msg:
            if len(args) == 1:
                return
            if named in args:
                await self._subscribe_batch(ws, [a for a in args if a != named])
                return
        elif len(args) == 1:
            self._refuse(args[0], msg)
            return
        half = len(args) // 2
        await self._subscribe_batch(ws, args[:half])
        await self._subscribe_batch(ws, args[half:])

    def _refuse(self, topic: str, ret_msg: str) -> None:
        self.refused[topic] = ret_msg
        self.metrics.inc("refused_topics")
        self.logger.warning(
            "%s: Bybit refused topic %s (%s); the other topics stay subscribed",
            self.name,
            topic,
            ret_msg,
        )

    # -------------------------------------------------------------------- gap recovery
    async def _open_gap(self) -> None:
        """Tell downstream transforms that trades after the last one delivered may be
        missing until the next session has recovered them (klines wait for them)."""
        if self._gap_since is not None or not self.trade_symbols or not self.settings.recover_gaps:
            return
        self._gap_since = min((w.newest_ts for w in self.windows.values()), default=now_ms())
        self._gap_lost = False
        await self.emit.gap(StreamGap(self.settings.channel, self.trade_symbols,
                                      self._gap_since))

    async def _close_gap(self) -> None:
        if self._gap_since is None:
            return
        since, self._gap_since = self._gap_since, None
        # Without REST, whatever traded during the outage is gone.
        lost = self._gap_lost or (self.rest is None and bool(self.windows))
        await self.emit.gap(StreamGap(self.settings.channel, self.trade_symbols, since,
                                      closed=True, complete=not lost))

    async def _recover(self, marks: dict[str, RecoveryMark]) -> None:
        """Emit the trades missed while disconnected (from REST), then the held live ones."""
        recovered: dict[str, list[Trade]] = {}
        limiter = trio.CapacityLimiter(8)  # Bybit: 600 requests per 5 s per IP
        self._held_ids = {}
        self._held_indexed = 0

        async def one(symbol: str, mark: RecoveryMark) -> None:
            async with limiter:
                recovered[symbol] = await self._recover_symbol(symbol, mark)

        async with trio.open_nursery() as nursery:
            for symbol, mark in marks.items():
                nursery.start_soon(one, symbol, mark)
        batch: list[Event] = []
        for symbol in marks:  # deterministic order: the order symbols were first seen
            batch.extend(recovered.get(symbol, ()))
        total = len(batch)
        if total:
            self.metrics.inc("recovered_trades", total)
            self.logger.info("%s: recovered %d missed trades from REST", self.name, total)
        # Release: nothing may overtake, so keep holding until the held list is empty.
        while True:
            batch.extend(self._held)
            self._held = []
            if not batch:
                break
            await self.emit(batch)
            batch = []
        self._holding = False

    async def _recover_symbol(self, symbol: str, mark: RecoveryMark) -> list[Trade]:
        assert self.rest is not None
        channel = self.settings.channel
        last_ts, seen_at_last = mark
        try:
            rows = await self.rest.recent_trades(channel, symbol)
            rows.reverse()  # Bybit: newest first
            trades = [trade_from_rest(channel, row) for row in rows]
        except REST_ERRORS as exc:
            self._gap(symbol, last_ts, self._first_held_ts(symbol), f"REST failed: {exc}")
            return []
        except (KeyError, ValueError, TypeError) as exc:
            self.metrics.inc("malformed")
            self._gap(symbol, last_ts, self._first_held_ts(symbol), f"bad REST answer: {exc!r}")
            return []
        # Rows can repeat two kinds of emitted trades: those stamped last_ts before the drop
        # and the live ones read (and held) since the reconnect.
        held = self._held_trade_ids(symbol)
        new = [
            t
            for t in trades
            if (t.ts > last_ts or (t.ts == last_ts and t.trade_id not in seen_at_last))
            and t.trade_id not in held
        ]
        # No gap if the rows reach back to a trade emitted before the drop (or older).
        reached_back = any(
            t.ts < last_ts or (t.ts == last_ts and t.trade_id in seen_at_last) for t in trades
        )
        if trades and not reached_back and len(rows) >= RECENT_TRADES_MAX.get(channel, 60):
            self._gap(symbol, last_ts, trades[0].ts, "more trades than recent-trade returns")
        if new:
            self._record_trades(symbol, new)
        return new

    def _held_trade_ids(self, symbol: str) -> set[str]:
        """Ids of the live trades of ``symbol`` held since the reconnect.

        Indexed incrementally: the held list only grows while recovering, and one scan per
        symbol of a long held list would cost O(symbols x held).
        """
        held = self._held
        index = self._held_ids
        for i in range(self._held_indexed, len(held)):
            e = held[i]
            if isinstance(e, Trade):
                ids = index.get(e.symbol)
                if ids is None:
                    ids = index[e.symbol] = set()
                ids.add(e.trade_id)
        self._held_indexed = len(held)
        return index.get(symbol, set())

    def _first_held_ts(self, symbol: str) -> int:
        for e in self._held:
            if isinstance(e, Trade) and e.symbol == symbol:
                return e.ts
        return now_ms()

    def _gap(self, symbol: str, from_ts: int, to_ts: int, why: str) -> None:
        self._gap_lost = True
        self.metrics.inc("trade_gaps")
        self.logger.warning(
            "%s: trade gap for %s: trades between %d and %d (%.1f s) may be missing (%s)",
            self.name,
            symbol,
            from_ts,
            to_ts,
            max(0, to_ts - from_ts) / 1000,
            why,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


__all__ = [
    "AckTimeout",
    "BybitConnection",
    "ConnectPacer",
    "ConnectionSettings",
    "StaleConnection",
    "TradeWindow",
    "named_topic",
]
