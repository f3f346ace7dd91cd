"""Who gets a connection: from a WebSocket request to an admitted, authenticated connection.

The path must match; an address locked out by too many failures is refused (429) whatever it
presents; then HTTP basic auth in the handshake, or the older streamer's first message
(``{"user", "key"}`` within ``auth_timeout``). Connections waiting to authenticate have
limits of their own (:class:`~streamer_websocket.admission.Admission`), apart from the
``max_clients`` places of served clients, so they never take a user's place. Every failure
is answered only after ``auth_failure_delay``. An admitted connection is handed to ``serve``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from streamer import Metrics, RateLimitedLog
from streamer_websocket.admission import Admission
from streamer_websocket.auth import Credentials, authorization_header
from streamer_websocket.config import WebSocketConfig

CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404

#: Seconds a refused connection (wrong path, no place free) is given to take its close frame:
#: a refusal must not hold a handler long, however many arrive.
REFUSAL_CLOSE_TIMEOUT = 1.0

AUTHENTICATED = '{"status":"authenticated"}'
AUTH_FAILED = '{"error":"Authentication failed"}'
AUTH_TIMEOUT = '{"error":"Authentication timeout"}'


def normalise_path(path: str) -> str:
    path = path.split("?", 1)[0]
    return path.rstrip("/") or "/"


def address_of(remote: object) -> str:
    """The source address of a connection (without port), the key of per-address limits."""
    return str(getattr(remote, "address", remote))


async def close_within(ws: WebSocketConnection, code: int, reason: str, timeout: float) -> None:
    with trio.move_on_after(timeout):
        await ws.aclose(code, reason)


class Gate:
    def __init__(
        self,
        config: WebSocketConfig,
        credentials: Credentials | None,
        metrics: Metrics,
        log: RateLimitedLog,
        serve: Callable[[WebSocketConnection], Awaitable[None]],
    ) -> None:
        self.config = config
        #: None: no authentication configured, every connection is served.
        self.credentials = credentials
        self.metrics = metrics
        self.admission = Admission(config)
        #: Authenticated connections (served, or being admitted); at most max_clients.
        self.connections = 0
        #: Set at shutdown: nothing new is admitted.
        self.closing = False
        self._log = log
        self._serve = serve
        self._path = normalise_path(config.path)

    async def handle(self, request: WebSocketRequest) -> None:
        """The server's handler for every request."""
        try:
            await self._handle_request(request)
        except ConnectionClosed:
            pass  # the client went away mid-handshake or mid-auth
        except Exception:
            # One client's trouble must never take the server down with it.
            self.metrics.inc("client_errors")
            self._log.logger.exception("websocket client handler failed")

    async def _handle_request(self, request: WebSocketRequest) -> None:
        creds = self.credentials
        address = address_of(request.remote)
        if normalise_path(request.path) != self._path:
            ws = await request.accept()
            self.metrics.inc("wrong_path")
            await self._close(ws, CLOSE_NOT_FOUND, "unknown path", REFUSAL_CLOSE_TIMEOUT)
            return
        if creds is None:
            await self._admit(await request.accept())
            return
        if self.admission.locked_out(address, trio.current_time()):
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
            if self.admission.enter_unauthenticated(address):
                try:
                    await self._auth_failed(address, "basic auth")
                finally:
                    self.admission.leave_unauthenticated(address)
            else:
                self.count_failure(address, "basic auth")
            await request.reject(
                401,
                extra_headers=[(b"WWW-Authenticate", b'Basic realm="streamer"')],
                body=b"Authentication failed\n",
            )
            return
        ws = await request.accept()
        if self.closing or not self.admission.enter_unauthenticated(address):
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
            self.admission.leave_unauthenticated(address)
        if authenticated:
            await self._admit(ws)

    async def _admit(self, ws: WebSocketConnection) -> None:
        """Serve an authenticated connection if a place is free, else close it with 1013."""
        if self.connections >= self.config.max_clients or self.closing:
            self.metrics.inc("rejected_max_clients")
            self._log.warning("max_clients", "websocket: max_clients (%d) reached; closing %s",
                              self.config.max_clients, ws.remote)
            await self._close(ws, CLOSE_TRY_AGAIN_LATER, "too many clients",
                              REFUSAL_CLOSE_TIMEOUT)
            return
        self.connections += 1
        try:
            await self._serve(ws)
        finally:
            self.connections -= 1

    def count_failure(self, address: str, how: str) -> None:
        """Count and log a failed authentication (also one sent inside a session)."""
        admission = self.admission
        in_window = admission.record_failure(address, trio.current_time())
        self.metrics.inc("auth_failures")
        self._log.warning(
            "auth", "websocket client %s: %s failed (%d from this address within %ss, "
            "%d failed authentications in total)", address, how, in_window,
            self.config.auth_failure_window, admission.failures_total)

    async def _auth_failed(self, address: str, how: str) -> None:
        """Count and log a failure, then wait auth_failure_delay before it is answered."""
        self.count_failure(address, how)
        await trio.sleep(self.config.auth_failure_delay)

    async def _close(self, ws: WebSocketConnection, code: int, reason: str,
                     timeout: float | None = None) -> None:
        send_timeout = self.config.send_timeout
        await close_within(ws, code, reason,
                           send_timeout if timeout is None else min(timeout, send_timeout))

    async def _send_bounded(self, ws: WebSocketConnection, text: str) -> None:
        with trio.move_on_after(self.config.send_timeout):
            await ws.send_message(text)

    async def _first_message_auth(self, ws: WebSocketConnection, address: str) -> bool:
        """The older streamer's protocol: ``{"user", "key"}`` first, within auth_timeout."""
        assert self.credentials is not None
        failed = False
        with trio.move_on_after(self.config.auth_timeout):
            raw = await ws.get_message()
            try:
                message = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                message = None
            if isinstance(message, dict) and self.credentials.check(
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
