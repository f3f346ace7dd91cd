"""The ``websocket`` sink: a trio-websocket server fanning batches out to clients.

One task (``run``) drains the inbox, renders each batch into envelopes once, updates the
snapshot and offers the envelopes to every client; it never awaits a client. Each client has
a connection handler task with three children: a reader (subscriptions, pings), a sender
(its own queue) and a pinger.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import msgspec
import trio
import trio.lowlevel
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    WebSocketServer,
)

from streamer import Context, FatalError, Inbox, RateLimitedLog
from streamer.wire import render
from streamer_websocket.admission import Admission
from streamer_websocket.auth import Credentials, authorization_header, resolve_credentials
from streamer_websocket.client import Client, FilterCache
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.envelope import Envelope
from streamer_websocket.snapshot import SnapshotStore
from streamer_websocket.subscription import (
    Subscription,
    SubscriptionError,
    everything,
    parse_args,
)
from streamer_websocket.tls import server_ssl_context

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404

#: Seconds a refused connection (wrong path, no place free) is given to take its close frame:
#: a refusal must not hold a handler long, however many arrive.
REFUSAL_CLOSE_TIMEOUT = 1.0

AUTHENTICATED = '{"status":"authenticated"}'
AUTH_FAILED = '{"error":"Authentication failed"}'
AUTH_TIMEOUT = '{"error":"Authentication timeout"}'


def _normalise_path(path: str) -> str:
    path = path.split("?", 1)[0]
    return path.rstrip("/") or "/"


def _address(remote: object) -> str:
    """The source address of a connection (without port), the key of per-address limits."""
    return str(getattr(remote, "address", remote))


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
        self._log = RateLimitedLog(context.logger)
        self._credentials: Credentials | None = None
        self._admission = Admission(config)
        self._tls = False
        #: Authenticated connections (served, or being admitted); at most max_clients.
        self._connections = 0
        self._closing = False
        self._clients_changed = trio.lowlevel.ParkingLot()
        self._ids = itertools.count(1)
        self._path = _normalise_path(config.path)

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
        return self._admission.unauthenticated

    async def wait_for_clients(self, count: int) -> None:
        """Wait until exactly ``count`` clients are authenticated and receiving."""
        while len(self.clients) != count:
            await self._clients_changed.park()

    # -- pipeline side ---------------------------------------------------------------------

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        self._credentials = resolve_credentials(config, os.environ, self.context.name)
        ssl_context = server_ssl_context(config, self.context.name)
        self._tls = ssl_context is not None
        self.clients = set()
        self._admission = Admission(config)
        self._connections = 0
        self._closing = False
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
            server = WebSocketServer(
                self._handle,
                listeners,
                handler_nursery=handlers,
                max_message_size=config.max_client_message,
                connect_timeout=config.auth_timeout,
                disconnect_timeout=config.send_timeout,
            )
            async with trio.open_nursery() as listening:
                await listening.start(server.run)
                self.port = tcp_listeners[0].socket.getsockname()[1]
                self.context.logger.info(
                    "websocket sink listening on %s (auth %s)",
                    self.url,
                    "on" if self._credentials else "off",
                )
                self.context.health.set("listener", True)
                task_status.started()
                try:
                    await self._fan_out(inbox)
                finally:
                    self.context.health.set("listener", False, "not listening")
                listening.cancel_scope.cancel()  # stop accepting; clients stay
            await self._close_clients()
            handlers.cancel_scope.cancel()

    async def _fan_out(self, inbox: Inbox) -> None:
        while events := await inbox.get():
            envelopes = [Envelope.from_wire(env) for env in render(events)]
            self.snapshot.update(envelopes)
            if self.clients:
                cache: FilterCache = {}
                for client in self.clients:
                    client.offer(envelopes, cache)

    async def _close_clients(self) -> None:
        """Flush queues and close every client with 1001, within shutdown_timeout."""
        self._closing = True
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

    # -- connection side -------------------------------------------------------------------

    async def _handle(self, request: WebSocketRequest) -> None:
        try:
            await self._handle_request(request)
        except ConnectionClosed:
            pass  # the client went away mid-handshake or mid-auth
        except Exception:
            # One client's trouble must never take the server down with it.
            self.metrics.inc("client_errors")
            self.context.logger.exception("websocket client handler failed")

    async def _handle_request(self, request: WebSocketRequest) -> None:
        creds = self._credentials
        address = _address(request.remote)
        if _normalise_path(request.path) != self._path:
            ws = await request.accept()
            self.metrics.inc("wrong_path")
            await self._close(ws, CLOSE_NOT_FOUND, "unknown path", REFUSAL_CLOSE_TIMEOUT)
            return
        if creds is None:
            await self._admit(await request.accept())
            return
        if self._admission.locked_out(address, trio.current_time()):
            # Refused whatever it presents: a right key must not be learnable by trying.
            self.metrics.inc("auth_lockouts")
            self._log.warning("lockout", "websocket client %s: refused, %d failed "
                              "authentications within %ss", address,
                              self.config.max_auth_failures, self.config.auth_failure_window)
            await request.reject(429, body=b"Too many failed authentications\n")
            return
        header = authorization_header(request.headers)
        if header is not None:
            if creds.check_basic(header):
                await self._admit(await request.accept())
                return
            if self._admission.enter_unauthenticated(address):
                try:
                    await self._auth_failed(address, "basic auth")
                finally:
                    self._admission.leave_unauthenticated(address)
            else:
                self._count_failure(address, "basic auth")
            await request.reject(
                401,
                extra_headers=[(b"WWW-Authenticate", b'Basic realm="streamer"')],
                body=b"Authentication failed\n",
            )
            return
        ws = await request.accept()
        if self._closing or not self._admission.enter_unauthenticated(address):
            self.metrics.inc("rejected_unauthenticated")
            self._log.warning(
                "max_unauthenticated", "websocket: too many unauthenticated connections "
                "(%d in total, %d per address at most); closing %s",
                self.config.max_unauthenticated, self.config.max_unauthenticated_per_address,
                address)
            await self._close(ws, CLOSE_TRY_AGAIN_LATER, "too many unauthenticated connections",
                              REFUSAL_CLOSE_TIMEOUT)
            return
        try:
            authenticated = await self._first_message_auth(ws, address)
        finally:
            self._admission.leave_unauthenticated(address)
        if authenticated:
            await self._admit(ws)

    async def _admit(self, ws: WebSocketConnection) -> None:
        """Serve an authenticated connection if a place is free, else close it with 1013."""
        if self._connections >= self.config.max_clients or self._closing:
            self.metrics.inc("rejected_max_clients")
            self._log.warning("max_clients", "websocket: max_clients (%d) reached; closing %s",
                              self.config.max_clients, ws.remote)
            await self._close(ws, CLOSE_TRY_AGAIN_LATER, "too many clients",
                              REFUSAL_CLOSE_TIMEOUT)
            return
        self._connections += 1
        try:
            await self._serve(ws)
        finally:
            self._connections -= 1

    def _count_failure(self, address: str, how: str) -> None:
        admission = self._admission
        in_window = admission.record_failure(address, trio.current_time())
        self.metrics.inc("auth_failures")
        self._log.warning(
            "auth", "websocket client %s: %s failed (%d from this address within %ss, "
            "%d failed authentications in total)", address, how, in_window,
            self.config.auth_failure_window, admission.failures_total)

    async def _auth_failed(self, address: str, how: str) -> None:
        """Count and log a failure, then wait auth_failure_delay before it is answered."""
        self._count_failure(address, how)
        await trio.sleep(self.config.auth_failure_delay)

    async def _close(
        self, ws: WebSocketConnection, code: int, reason: str, timeout: float | None = None
    ) -> None:
        with trio.move_on_after(self.config.send_timeout if timeout is None
                                else min(timeout, self.config.send_timeout)):
            await ws.aclose(code, reason)

    async def _send_bounded(self, ws: WebSocketConnection, text: str) -> None:
        with trio.move_on_after(self.config.send_timeout):
            await ws.send_message(text)

    async def _first_message_auth(self, ws: WebSocketConnection, address: str) -> bool:
        """The older streamer's protocol: ``{"user", "key"}`` first, within auth_timeout."""
        assert self._credentials is not None
        failed = False
        with trio.move_on_after(self.config.auth_timeout):
            raw = await ws.get_message()
            try:
                message = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                message = None
            if isinstance(message, dict) and self._credentials.check(
                message.get("user"), message.get("key")
            ):
                await self._send_bounded(ws, AUTHENTICATED)
                return True
            failed = True
        if failed:
            # The delay is outside auth_timeout: a guess is never answered sooner.
            await self._auth_failed(address, "authentication")
            await self._send_bounded(ws, AUTH_FAILED)
            await self._close(ws, CLOSE_UNAUTHORIZED, "authentication failed")
            return False
        self.metrics.inc("auth_timeouts")
        await self._send_bounded(ws, AUTH_TIMEOUT)
        await self._close(ws, CLOSE_UNAUTHORIZED, "authentication timeout")
        return False

    async def _serve(self, ws: WebSocketConnection) -> None:
        config = self.config
        async with trio.open_nursery() as nursery:
            client = Client(
                ws,
                client_id=next(self._ids),
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
            self._clients_changed.unpark_all()
            self.metrics.inc("clients_connected")
            try:
                client.enqueue(self.snapshot.envelopes(None))
                if self._closing:
                    client.close_gracefully()
                nursery.start_soon(self._read_loop, client)
                if config.ping_interval > 0:
                    nursery.start_soon(self._ping_loop, client)
                await client.send_loop()
                if client.closing:
                    await self._close(ws, CLOSE_GOING_AWAY, "server shutting down")
                nursery.cancel_scope.cancel()
            finally:
                self.clients.discard(client)
                self._clients_changed.unpark_all()
                self.metrics.inc("clients_disconnected")
        if client.kicked is not None:
            self._log.warning("kick", "websocket client %s disconnected: %s", ws.remote,
                              client.kicked)
            if client.kick_code is not None:
                # Say why if the socket takes it at once; a client that reads nothing
                # must not hold the handler for long.
                with trio.move_on_after(min(1.0, self.config.send_timeout)):
                    await ws.aclose(client.kick_code, client.kicked[:120])
            await trio.aclose_forcefully(ws)

    async def _read_loop(self, client: Client) -> None:
        while True:
            try:
                raw = await client.ws.get_message()
            except ConnectionClosed:
                if not client.closing:
                    client.cancel_scope.cancel()
                return
            self._on_message(client, raw)

    async def _ping_loop(self, client: Client) -> None:
        interval = self.config.ping_interval
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(interval) as scope:
                try:
                    await client.ws.ping()
                except ConnectionClosed:
                    return
            if scope.cancelled_caught:
                client.kick(f"no pong within {interval}s", "ping_timeouts")
                return

    def _bad_message(self, client: Client, error: str, reply: dict[str, Any]) -> None:
        self.metrics.inc("bad_client_messages")
        self._log.warning("bad_message", "websocket client %s: %s", client.ws.remote, error)
        client.reply(reply)

    def _on_message(self, client: Client, raw: str | bytes) -> None:
        try:
            message = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            self._bad_message(client, "invalid JSON", {"error": "invalid JSON"})
            return
        if not isinstance(message, dict):
            self._bad_message(client, "not an object", {"error": "expected a JSON object"})
            return
        if message.get("type") == "ping":
            client.reply({"type": "pong"})
            return
        op = message.get("op")
        if op in ("subscribe", "unsubscribe"):
            self._on_subscription(client, op, message.get("args"))
        elif op == "ping":
            client.reply({"op": "pong"})
        elif "user" in message or "key" in message:
            # Older clients may (re)send credentials once connected: answer, never close.
            creds = self._credentials
            if creds is None or creds.check(message.get("user"), message.get("key")):
                client.reply({"status": "authenticated"})
            else:
                self._count_failure(_address(client.ws.remote), "authentication (in session)")
                client.reply({"error": "Authentication failed"})
        else:
            self._bad_message(
                client,
                f"unknown request {str(message)[:80]}",
                {"error": 'unknown request: expected "op" subscribe/unsubscribe/ping '
                          'or "type": "ping"'},
            )

    def _on_subscription(self, client: Client, op: str, raw_args: Any) -> None:
        # In place and in O(request): the held set is never copied.
        sub = client.subscription
        try:
            args = parse_args(raw_args)
            if op == "subscribe":
                sub = Subscription() if sub is None else sub  # the first one narrows
                sub.subscribe(args, limit=self.config.max_subscriptions_per_client)
            else:
                sub = everything() if sub is None else sub
                sub.unsubscribe(args)
        except SubscriptionError as exc:
            self._bad_message(client, f"bad {op}: {exc}",
                              {"op": op, "success": False, "error": str(exc)})
            return
        client.subscription = sub
        if client.reply({"op": op, "success": True, "args": args}) and op == "subscribe":
            client.enqueue(self.snapshot.envelopes(Subscription.of(args)))
