"""One Bybit WebSocket connection's lifecycle: connect, subscribe, read, heartbeat, reconnect.

A connection owns a fixed list of topics. Each session (one socket) runs three tasks in a
nursery: the reader (the only task that receives), the heartbeat (ping every
``ping_interval``; the connection is stale when nothing at all arrived for ``stale_timeout``)
and the subscriber (:class:`~streamer_bybit.subscription.Subscription`: subscribe requests in
chunks, every ack checked; then :class:`~streamer_bybit.recovery.GapRecovery` recovers the
trades missed while the previous session was down). The first task to hit a problem records
the cause and cancels the session; the connection then backs off and starts a new session.
Causes are recorded rather than raised so that one clean log line per reconnect comes out,
instead of an ExceptionGroup.

The flow of one socket read, top-down (all in the reader task, no task switch):

1. read: ``ws.receive()`` returns every complete message of one socket read; the capture
   (``capture_dir``) records them raw;
2. decode: :class:`~streamer_bybit.decode.MessageDecoder` turns them into events (op replies
   go to the subscription);
3. hold book: the connection's :class:`~streamer_bybit.outlet.Outlet` passes them through
   its :class:`~streamer_bybit.hold_book.HoldBook` (after a reconnect, the live trades of the
   symbols being recovered wait there; otherwise it only notes the newest trade per symbol);
4. emit: what the book lets through goes downstream in one ``emit``.

Gap recovery feeds the same outlet from its own task: a symbol's recovered trades (fetched
from REST) go through the hold book, which releases its held live trades after them.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterable
from typing import Final

import msgspec
import trio

from streamer import Backoff, Emit, Event, RateLimitedLog
from streamer.net import READ_SIZE, HandshakeError, WakeTimer, WebSocket, WebSocketClosed
from streamer_bybit.book_worker import book_keeper_for, run_book_worker
from streamer_bybit.capture import CaptureTap
from streamer_bybit.connection_settings import ConnectionSettings, ConnectionShared, connection_name
from streamer_bybit.decode import Message, MessageDecoder
from streamer_bybit.derivatives import DerivativesTracker
from streamer_bybit.hold_book import HoldBook
from streamer_bybit.liquidations import LiquidationFeed
from streamer_bybit.live_topics import LiveTopics
from streamer_bybit.outlet import Outlet
from streamer_bybit.pacer import ConnectPacer
from streamer_bybit.recovery import (
    REST_ERRORS,
    GapRecovery,
    TradeWindow,
    describe,
)
from streamer_bybit.subscription import AckTimeout, Subscription, named_topic
from streamer_bybit.tickers import TickerBook

#: Errors that mean "the network or the server is not there right now": log and retry.
NETWORK_ERRORS = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    HandshakeError,
    WebSocketClosed,
    ssl.SSLError,
)

#: A read of at least this many bytes is not followed by the coalescing wait: its wake-up is
#: already shared by ~100 messages or more, and more data is likely queued in the socket
#: (waiting would only cap the throughput). Half a read, so that TLS's record overhead
#: (a 64 KiB socket read decrypts to less than 64 KiB) still counts as a large read.
COALESCE_SKIP: Final = READ_SIZE // 2

_encode = msgspec.json.Encoder().encode


class StaleConnection(Exception):
    """Nothing arrived (no data, no pong) for ``stale_timeout`` seconds."""


class BybitConnection(LiveTopics):
    """Streams ``topics`` over one WebSocket, reconnecting forever until cancelled.

    ``capture`` (``capture_dir``): sees every socket read and what gap recovery does.
    """

    def __init__(
        self,
        index: int,
        topics: Iterable[str],
        settings: ConnectionSettings,
        emit: Emit,
        shared: ConnectionShared,
        capture: CaptureTap | None = None,
        trade_symbols: Iterable[str] | None = None,
    ) -> None:
        logger, metrics, rest, prices = shared.logger, shared.metrics, shared.rest, shared.prices
        self.index = index
        self.topics = list(dict.fromkeys(topics))
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        self.pacer = shared.pacer
        self.rest = rest
        self.name = connection_name(shared.name, index)
        self.capture = capture
        self.log = RateLimitedLog(logger)
        self.subscription = Subscription(
            index, self.topics, chunk=settings.subscribe_chunk,
            ack_timeout=settings.ack_timeout, metrics=metrics, logger=logger, name=self.name,
        )
        self.book = TickerBook(
            settings.channel, prices, emit_tickers=settings.emit_tickers,
            price_field=settings.ticker_price_field,
            derivatives=DerivativesTracker(settings.channel) if settings.derivatives else None,
        )
        #: Symbols whose trades this connection carries (what a stream gap concerns); given
        #: when a trade topic is not one symbol's (options: ``publicTrade.<COIN>``).
        self.trade_symbols = tuple(trade_symbols) if trade_symbols is not None else tuple(
            t.partition(".")[2] for t in self.topics if t.startswith("publicTrade.")
        )
        liquidation_symbols = tuple(
            t.partition(".")[2] for t in self.topics if t.startswith("allLiquidation.")
        )
        self.liquidations = (LiquidationFeed(settings.channel, liquidation_symbols, metrics)
                             if liquidation_symbols else None)
        # The flow of one read: the reader -> the decoder -> the outlet (through the hold
        # book when gaps are recovered) -> emit. Recovery feeds the same outlet.
        self.decoder = MessageDecoder(
            settings.channel,
            metrics,
            self.log,
            self.book,
            prices,
            price_from_trades=settings.price_from_trades,
            liquidations=self.liquidations,
        )
        #: The order books of this connection's "orderbook" topics (None without).
        self.books = self.decoder.books = book_keeper_for(settings, self.topics, metrics,
                                                          self.log, self.name)
        hold_book = (HoldBook(metrics, settings.recovery.max_held) if settings.recover_gaps
                     else None)
        self.outlet = Outlet(emit, hold_book, capture, logger=logger, name=self.name)
        self.recovery: GapRecovery | None = None
        if settings.recover_gaps:
            self.recovery = GapRecovery(
                settings.channel,
                self.trade_symbols,
                rest,
                settings.recovery,
                self.outlet,
                metrics=metrics,
                logger=logger,
                name=self.name,
            )
        self.backoff = Backoff(initial=0.5, maximum=max(0.5, settings.reconnect_max_delay))
        self.sessions = 0  # sessions that reached "subscribed"
        self.reconnects = 0
        self.subscribed = trio.Event()  # set whenever the current session is subscribed
        self._last_activity = 0.0
        #: trio time of the newest data message (not pongs) and of the current session's
        #: subscribe; read at scrape time by the source's metrics and health probes.
        self.last_data: float | None = None
        self.subscribed_at: float | None = None
        #: WebSocket messages received, for the metrics (trades: ``decoder.trades``).
        self.messages = 0
        #: Socket reads made, and coalescing waits made after them (all sessions).
        self.reads = 0
        self.waits = 0
        self._emitting = False  # the reader waits in emit (downstream, not the server)
        self._cause: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._binary_seen = 0
        self._ws: WebSocket | None = None  # the current session's socket

    # -------------------------------------------------------------------- bookkeeping
    @property
    def windows(self) -> dict[str, TradeWindow]:
        """Per symbol, what recovery knows of the trades emitted (empty without recovery)."""
        return self.recovery.windows if self.recovery is not None else {}

    def _fail(self, cause: BaseException) -> None:
        if self._cause is None:
            self._cause = cause
        # An emit in progress is not cut half-way (its events were read, and noted for gap
        # recovery): the reader ends the session as soon as the emit returns.
        if self._scope is not None and not self._emitting:
            self._scope.cancel()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def refused(self) -> dict[str, str]:
        """Topics Bybit refused, with its message."""
        return self.subscription.refused

    @property
    def active_topics(self) -> list[str]:
        return self.subscription.active_topics

    # -------------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect and stream forever; ``started()`` once the first session is subscribed.

        Run again after an earlier run was cancelled (its source failed and is restarted:
        see :class:`~streamer_bybit.source.BybitSource`), it resumes where that one stopped:
        the stream gap is reported and the first session recovers the trades missed since
        the last one delivered.
        """
        url = self.settings.url
        sessions_before = self.sessions
        if self.sessions > 0:
            self.logger.warning("%s: resuming after the source restarted", self.name)
            if self.recovery is not None:
                await self.recovery.open_gap()
            await self._liquidation_gap(opened=True)
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
                    describe(exc),
                    delay,
                )
                await trio.sleep(delay)
                continue
            started_at = trio.current_time()
            ended = False  # the session ended by itself (not cancelled from outside)
            try:
                await self._session(ws, task_status)
                ended = True
            finally:
                self.subscribed_at = None
                with trio.CancelScope(shield=True):
                    await ws.aclose()
                    if self.recovery is not None:
                        # Stopping (or the source restarting): the held trades go now; a
                        # resumed run recovers from after them.
                        if not ended:
                            with trio.move_on_after(5):
                                await self.recovery.stop()
                        self.recovery.end_session()
            if self.sessions > sessions_before:  # started() was called
                task_status = trio.TASK_STATUS_IGNORED
            if self.sessions > 0:
                if self.recovery is not None:
                    await self.recovery.open_gap()
                await self._liquidation_gap(opened=True)
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
                describe(cause) if cause is not None else "unknown cause",
                delay,
            )
            await trio.sleep(delay)

    async def _session(self, ws: WebSocket, task_status: trio.TaskStatus[None]) -> None:
        self._cause = None
        self.subscription.new_session()
        self._binary_seen = 0
        self._last_activity = trio.current_time()
        self.subscribed = trio.Event()
        self._ws = ws
        if self.capture is not None:
            self.capture.session(self.reconnects)
        self.book.reset()  # a fresh snapshot follows the subscribe
        if self.books is not None:
            self.books.new_session(trio.current_time())
        # After a reconnect, live trades of the symbols to recover wait for the missed ones.
        if self.sessions > 0 and self.recovery is not None:
            self.recovery.begin()
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._heartbeat, ws)
                nursery.start_soon(self._subscriber, ws, task_status)
                if self.books is not None:
                    nursery.start_soon(run_book_worker, self, ws, self.books)
                await self._reader(ws)
        finally:  # cancelled too: a connection resumed later must not look connected meanwhile
            self._scope = None
            self._ws = None

    async def _reader(self, ws: WebSocket) -> None:
        coalesce = self.settings.coalesce
        # The coalescing wait sleeps on a timerfd: woken as a socket read is, where trio's
        # own timer (a cancel-scope deadline) costs twice the CPU per wake-up.
        timer = WakeTimer() if coalesce else None
        try:
            await self._read_loop(ws, coalesce, timer)
        finally:
            if timer is not None:
                timer.close()

    async def _read_loop(self, ws: WebSocket, coalesce: float, timer: WakeTimer | None) -> None:
        decode_read = self.decoder.decode_read
        send = self.outlet.send
        waited = False  # the coalescing wait just ended: it was the checkpoint of this read
        # The latest wait gathered nothing (the next message came after it): the traffic is
        # sparser than the wait, which would only add a wake-up per message. Until two reads
        # come within ``coalesce`` of each other again, a read is not followed by the wait.
        # A wait that gathers anything pays: at 250 msg/s a 5 ms wait gathers ~1.4 messages
        # and a read cycle after it costs ~1.15x one woken by the socket (docs/plugins/
        # bybit.md, "The coalescing wait"), so it is kept there.
        sparse = False
        previous = -math.inf  # when the read before this one came
        while True:
            try:
                payloads = await ws.receive(checkpointed=waited)
            except WebSocketClosed as exc:
                self._fail(exc)
                return
            self._last_activity = now = trio.current_time()
            self.reads += 1
            if waited:
                sparse = ws.found_empty
            elif sparse and now - previous < coalesce:
                sparse = False
            previous = now
            self.messages += len(payloads)
            if self.capture is not None and payloads:
                self.capture.record(payloads, now)
            if ws.binary_frames != self._binary_seen:
                self.metrics.inc("unexpected_binary", ws.binary_frames - self._binary_seen)
                self._binary_seen = ws.binary_frames
                self.log.warning("unexpected_binary", "%s: binary frame dropped", self.name)
            events: list[Event] = []
            if self.books is not None:
                self.books.now = now
            for reply in decode_read(payloads, events):
                self._on_reply(reply)
            if events:
                self.last_data = now
                self._emitting = True
                try:
                    await send(events)
                finally:
                    self._emitting = False
                    if self.books is not None:
                        self.books.emitted(now, trio.current_time())
                if self._cause is not None:  # failed meanwhile: end the session now
                    self._fail(self._cause)
                    return
                # Time spent waiting on a sink with overflow = "block" is not the server's
                # silence.
                self._last_activity = trio.current_time()
            if timer is not None and not sparse and ws.last_read_size < COALESCE_SKIP:
                # Let messages gather in the socket: the next read returns them together.
                # Counted from the read, so a message waits at most ``coalesce`` plus the
                # handling of one read. Staleness stays exact: the heartbeat judges from
                # _last_activity, set just above, and coalesce < stale_timeout. A sleep is a
                # checkpoint: cancelling the session ends it here at once. After an emit,
                # _last_activity is the time already.
                left = now + coalesce - (self._last_activity if events else trio.current_time())
                waited = left > 0
                if waited:
                    self.waits += 1
                    await timer.sleep(left)
            else:
                waited = False

    def _on_reply(self, reply: Message) -> None:
        if reply.op in ("ping", "pong") or reply.ret_msg == "pong":  # option: op "pong"
            return  # a pong: its arrival already counted as activity
        if self.subscription.on_reply(reply):
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
            if self._emitting:  # blocked downstream: keep pinging, judge staleness later
                await trio.sleep_until(next_ping)
            else:
                await trio.sleep_until(min(next_ping, self._last_activity + stale))
            now = trio.current_time()
            if now >= self._last_activity + stale and not self._emitting:
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
    ) -> None:
        try:
            await self.subscription.subscribe_all(ws)
        except (WebSocketClosed, AckTimeout) as exc:
            self._fail(exc)
            return
        self.subscribed.set()
        self.subscribed_at = trio.current_time()
        first = self.sessions == 0
        self.sessions += 1
        task_status.started()  # TASK_STATUS_IGNORED after the first session of a run
        if not first:
            self.logger.info("%s: resubscribed %d topics", self.name, len(self.active_topics))
            await self._liquidation_gap(opened=False)
        if self.recovery is not None:
            await self.recovery.run()



__all__ = [
    "NETWORK_ERRORS",
    "REST_ERRORS",
    "AckTimeout",
    "BybitConnection",
    "ConnectPacer",
    "ConnectionSettings",
    "StaleConnection",
    "TradeWindow",
    "named_topic",
]
