"""The ``websocket`` sink: a trio-websocket server fanning batches out to clients.

One task (``run``) drains the inbox, renders each batch into envelopes once, updates the
snapshot and offers the envelopes to every client, or to the tick of batched clients
(:mod:`streamer_websocket.batching`); it never awaits a client. Who gets a
connection is :mod:`streamer_websocket.gate`'s job; each admitted client is served by a task
with three children: a reader and a pinger (:mod:`streamer_websocket.session`) and a sender
(its own queue, :mod:`streamer_websocket.client`).
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import TYPE_CHECKING

import trio
import trio.lowlevel
from trio_websocket import WebSocketConnection

from streamer import Context, FatalError, Inbox, RateLimitedLog
from streamer.wire import render
from streamer_websocket.auth import resolve_credentials
from streamer_websocket.batching import Ticker
from streamer_websocket.client import Client, FilterCache
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.envelope import Envelope
from streamer_websocket.front import FrontDoor
from streamer_websocket.gate import Gate, close_within
from streamer_websocket.session import Session
from streamer_websocket.snapshot import SnapshotStore
from streamer_websocket.tls import server_ssl_context

if TYPE_CHECKING:
    from streamer_websocket.web.status import StatusBoard

CLOSE_GOING_AWAY = 1001


class WebSocketSink:
    def __init__(self, config: WebSocketConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.metrics = context.metrics
        #: The bound TCP port once started (useful with ``port = 0``).
        self.port: int | None = None
        #: Authenticated clients receiving data.
        self.clients: set[Client] = set()
        self.snapshot = SnapshotStore()
        self.snapshot.books.metrics = context.metrics
        self._log = RateLimitedLog(context.logger)
        #: The clients served per inbox drain (not batched).
        self._unbatched: set[Client] = set()
        self._ticker = Ticker(config.batch_interval, config.max_message_size, self._unbatched)
        self._gate = Gate(config, None, self.metrics, self._log, self._serve)
        self._session = Session(config, self.metrics, self._log, self.snapshot, self._gate,
                                self._ticker)
        self._status: StatusBoard | None = None
        if config.web:
            from streamer_websocket.web.status import StatusBoard

            self._status = StatusBoard(context.pipeline)
        self._tls = False
        self._clients_changed = trio.lowlevel.ParkingLot()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self._tls else "ws"
        return f"{scheme}://{host}:{self.port}{self.config.path}"

    @property
    def unauthenticated(self) -> int:
        """Connections between their handshake and their authentication, right now."""
        return self._gate.admission.unauthenticated

    async def wait_for_clients(self, count: int) -> None:
        """Wait until exactly ``count`` clients are authenticated and receiving."""
        while len(self.clients) != count:
            await self._clients_changed.park()

    # -- pipeline side ---------------------------------------------------------------------

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        credentials = resolve_credentials(config, os.environ, self.context.name)
        ssl_context = server_ssl_context(config, self.context.name)
        self._tls = ssl_context is not None
        self.clients = set()
        self._unbatched = set()
        self._gate = Gate(config, credentials, self.metrics, self._log, self._serve)
        self._ticker = Ticker(config.batch_interval, config.max_message_size, self._unbatched)
        self._session = Session(config, self.metrics, self._log, self.snapshot, self._gate,
                                self._ticker,
                                None if self._status is None else self._status.status)
        if self._status is not None:
            self._ticker.status_text = self._session.status_text
        pages = None
        if config.web:
            from streamer_websocket.web.pages import Pages

            pages = Pages(self._gate, self.metrics, config.path, credentials is not None).serve
        front = FrontDoor(config, self._gate.handle, pages)
        try:
            tcp_listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        except OSError as exc:
            raise FatalError(
                f"websocket sink {self.context.name!r}: cannot listen on "
                f"{config.host}:{config.port}: {exc}"
            ) from exc
        listeners: list[trio.SSLListener[trio.SocketStream] | trio.SocketListener]
        listeners = list(tcp_listeners)
        if ssl_context is not None:
            # The TLS handshake runs inside trio-websocket's connect_timeout (auth_timeout).
            listeners = [trio.SSLListener(listener, ssl_context, https_compatible=True)
                         for listener in tcp_listeners]
        async with trio.open_nursery() as handlers:
            async with trio.open_nursery() as listening:
                await listening.start(functools.partial(
                    trio.serve_listeners, front.handle, listeners, handler_nursery=handlers))
                self.port = tcp_listeners[0].socket.getsockname()[1]
                self.context.logger.info(
                    "websocket sink listening on %s (auth %s)",
                    self.url,
                    "on" if credentials else "off",
                )
                self.context.health.set("listener", True)
                listening.start_soon(self._ticker.run)
                task_status.started()
                try:
                    await self._fan_out(inbox)
                finally:
                    self.context.health.set("listener", False, "not listening")
                listening.cancel_scope.cancel()  # stop accepting and ticking; clients stay
            await self._close_clients()
            handlers.cancel_scope.cancel()

    async def _fan_out(self, inbox: Inbox) -> None:
        while events := await inbox.get():
            envelopes = [Envelope.from_wire(env) for env in render(events)]
            self.snapshot.update(envelopes)
            if self._unbatched:
                cache: FilterCache = {}
                for client in self._unbatched:
                    client.offer(envelopes, cache)
            self._ticker.collect(envelopes)

    async def _close_clients(self) -> None:
        """Flush queues and close every client with 1001, within shutdown_timeout."""
        self._gate.closing = True
        self._ticker.tick()  # what came since the last tick goes out with the flush
        for client in self.clients:
            client.close_gracefully()
        with trio.move_on_after(self.config.shutdown_timeout):
            while self.clients:
                await self._clients_changed.park()
        if self.clients:
            self.context.logger.warning(
                "%d websocket clients did not close within %ss; dropping them",
                len(self.clients),
                self.config.shutdown_timeout,
            )

    # -- serving an admitted client ---------------------------------------------------------

    async def _serve(self, ws: WebSocketConnection, address: str) -> None:
        """Serve an admitted connection until it ends: registered for the fan-out, given the
        snapshot first."""
        config = self.config
        async with trio.open_nursery() as nursery:
            client = Client(
                ws,
                client_id=next(self._ids),
                address=address,
                queue_size=config.client_queue_size,
                max_dropped=config.max_dropped,
                max_replies=config.max_queued_replies,
                send_timeout=config.send_timeout,
                max_message_chars=config.max_message_size,
                metrics=self.metrics,
                cancel_scope=nursery.cancel_scope,
            )
            # Registering and queueing the snapshot happen with no checkpoint between, so
            # the client misses no batch and gets the snapshot before any live data.
            self.clients.add(client)
            self._unbatched.add(client)
            self._clients_changed.unpark_all()
            self.metrics.inc("clients_connected")
            try:
                client.enqueue(self.snapshot.envelopes(None))
                if self._gate.closing:
                    client.close_gracefully()
                nursery.start_soon(self._session.read_loop, client)
                if config.ping_interval > 0:
                    nursery.start_soon(self._session.ping_loop, client)
                await client.send_loop()
                if client.closing:
                    await close_within(ws, CLOSE_GOING_AWAY, "server shutting down",
                                       config.send_timeout)
                nursery.cancel_scope.cancel()
            finally:
                self.clients.discard(client)
                self._unbatched.discard(client)
                self._ticker.discard(client)
                self._clients_changed.unpark_all()
                self.metrics.inc("clients_disconnected")
        if client.kicked is not None:
            self._log.warning("kick", "websocket client %s disconnected: %s", address,
                              client.kicked)
            if client.kick_code is not None:
                # Say why if the socket takes it at once; a client that reads nothing
                # must not hold the handler for long.
                await close_within(ws, client.kick_code, client.kicked[:120],
                                   min(1.0, self.config.send_timeout))
            await trio.aclose_forcefully(ws)
