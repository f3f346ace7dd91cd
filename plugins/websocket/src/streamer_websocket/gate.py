"""Who gets a connection: from a WebSocket request to an admitted, authenticated connection.

The client's address is the TCP peer's, or the one a trusted proxy forwards
(:mod:`streamer_websocket.forwarded`). The path must match; then HTTP basic auth in the
handshake, or the older streamer's first message (``{"user", "key"}`` within
``auth_timeout``). An (address, user) locked out by too many failures is refused (429, or
close code 4429) whatever key it presents. Connections waiting to authenticate have limits of
their own (:class:`~streamer_websocket.admission.Admission`), apart from the ``max_clients``
places of served clients, so they never take a user's place. Every failure (a wrong key, a
message that is not JSON or nested too deeply, one over ``max_client_message``) is counted
and answered only after ``auth_failure_delay``. An admitted connection is handed to ``serve``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest

from streamer import Metrics, RateLimitedLog
from streamer_websocket.admission import Admission, FailureKey
from streamer_websocket.auth import Credentials, authorization_header, parse_basic
from streamer_websocket.client_json import BadClientJSON, decode_client_json
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.forwarded import ClientAddresses

CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_LOCKED_OUT = 4429
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404

#: Seconds a refused connection (wrong path, no place free) is given to take its close frame:
#: a refusal must not hold a handler long, however many arrive.
REFUSAL_CLOSE_TIMEOUT = 1.0

AUTHENTICATED = '{"status":"authenticated"}'
AUTH_FAILED = '{"error":"Authentication failed"}'
AUTH_TIMEOUT = '{"error":"Authentication timeout"}'
LOCKED_OUT = '{"error":"Too many failed authentications"}'


def normalise_path(path: str) -> str:
    path = path.split("?", 1)[0]
    return path.rstrip("/") or "/"


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
        serve: Callable[[WebSocketConnection, str], Awaitable[None]],
    ) -> None:
        self.config = config
        #: None: no authentication configured, every connection is served.
        self.credentials = credentials
        self.metrics = metrics
        self.admission = Admission(config)
        self.addresses = ClientAddresses(config.trusted_proxies, config.forwarded_header)
        #: Authenticated connections (served, or being admitted); at most max_clients.
        self.connections = 0
        #: Set at shutdown: nothing new is admitted.
        self.closing = False
        self._log = log
        self._serve = serve
        self._path = normalise_path(config.path)

    async def handle(self, request: WebSocketRequest, peer: str) -> None:
        """The front door's handler for every WebSocket request from TCP peer ``peer``."""
        try:
            await self._handle_request(request, peer)
        except ConnectionClosed:
            pass  # the client went away mid-handshake or mid-auth
        except Exception:
            # One client's trouble must never take the server down with it.
            self.metrics.inc("client_errors")
            self._log.logger.exception("websocket client handler failed")

    def client_address(self, peer: str, headers: Sequence[tuple[bytes, bytes]]) -> str:
        """The address per-address limits count: the peer's, or the one its proxy names."""
        address, unusable = self.addresses.client_of(peer, headers)
        if unusable:
            self.metrics.inc("bad_forwarded_headers")
            self._log.warning("forwarded", "websocket: trusted proxy %s sent a %s naming no "
                              "address; counting the proxy itself", peer,
                              self.config.forwarded_header)
        return address

    async def _handle_request(self, request: WebSocketRequest, peer: str) -> None:
        creds = self.credentials
        address = self.client_address(peer, request.headers)
        if normalise_path(request.path) != self._path:
            ws = await request.accept()
            self.metrics.inc("wrong_path")
            await self._close(ws, CLOSE_NOT_FOUND, "unknown path", REFUSAL_CLOSE_TIMEOUT)
            return
        if creds is None:
            await self._admit(await request.accept(), address)
            return
        header = authorization_header(request.headers)
        if header is not None:
            user, key = parse_basic(header)
            failure_key = (address, creds.names_user(user))
            if self._locked_out(failure_key):
                await request.reject(429, body=b"Too many failed authentications\n")
                return
            if creds.check(user, key):
                await self._admit(await request.accept(), address)
                return
            if self.admission.enter_unauthenticated(address):
                try:
                    await self._auth_failed(failure_key, "basic auth")
                finally:
                    self.admission.leave_unauthenticated(address)
            else:
                self.count_failure(failure_key, "basic auth")
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
            await self._admit(ws, address)

    async def _admit(self, ws: WebSocketConnection, address: str) -> None:
        """Serve an authenticated connection if a place is free, else close it with 1013."""
        if self.connections >= self.config.max_clients or self.closing:
            self.metrics.inc("rejected_max_clients")
            self._log.warning("max_clients", "websocket: max_clients (%d) reached; closing %s",
                              self.config.max_clients, address)
            await self._close(ws, CLOSE_TRY_AGAIN_LATER, "too many clients",
                              REFUSAL_CLOSE_TIMEOUT)
            return
        self.connections += 1
        try:
            await self._serve(ws, address)
        finally:
            self.connections -= 1

    def _locked_out(self, key: FailureKey) -> bool:
        """True (counted, logged) if ``key`` has used up its failures for now."""
        if not self.admission.locked_out(key, trio.current_time()):
            return False
        # Refused whatever it presents: a right key must not be learnable by trying.
        self.metrics.inc("auth_lockouts")
        self._log.warning("lockout", "websocket client %s: refused, %d failed "
                          "authentications for %s within %ss", key[0],
                          self.config.max_auth_failures, _user_label(key),
                          self.config.auth_failure_window)
        return True

    def count_failure(self, key: FailureKey, how: str) -> None:
        """Count and log a failed authentication (also one sent inside a session)."""
        admission = self.admission
        in_window = admission.record_failure(key, trio.current_time())
        self.metrics.inc("auth_failures")
        self._log.warning(
            "auth", "websocket client %s: %s failed (%d for %s from this address within %ss, "
            "%d failed authentications in total)", key[0], how, in_window, _user_label(key),
            self.config.auth_failure_window, admission.failures_total)

    async def _auth_failed(self, key: FailureKey, how: str) -> None:
        """Count and log a failure, then wait auth_failure_delay before it is answered."""
        self.count_failure(key, how)
        await trio.sleep(self.config.auth_failure_delay)

    async def _close(self, ws: WebSocketConnection, code: int, reason: str,
                     timeout: float | None = None) -> None:
        send_timeout = self.config.send_timeout
        await close_within(ws, code, reason,
                           send_timeout if timeout is None else min(timeout, send_timeout))

    async def _answer(self, ws: WebSocketConnection, text: str, code: int, reason: str) -> None:
        """Send ``text`` and close with ``code``, each bounded by send_timeout; nothing if
        the connection is closed already (a message over max_client_message closes it)."""
        if ws.closed is not None:
            return
        with trio.move_on_after(self.config.send_timeout):
            await ws.send_message(text)
        if code:
            await self._close(ws, code, reason)

    async def _first_message_auth(self, ws: WebSocketConnection, address: str) -> bool:
        """The older streamer's protocol: ``{"user", "key"}`` first, within auth_timeout."""
        creds = self.credentials
        assert creds is not None
        raw: str | bytes | None = None
        with trio.move_on_after(self.config.auth_timeout) as waiting:
            try:
                raw = await ws.get_message()
            except ConnectionClosed as exc:
                if exc.reason is None or exc.reason.code != CLOSE_MESSAGE_TOO_BIG:
                    raise
        if waiting.cancelled_caught:
            self.metrics.inc("auth_timeouts")
            await self._answer(ws, AUTH_TIMEOUT, CLOSE_UNAUTHORIZED, "authentication timeout")
            return False
        user: object = None
        key: object = None
        if raw is None:
            how = f"authentication (message over {self.config.max_client_message} bytes)"
        else:
            try:
                message = decode_client_json(raw)
            except BadClientJSON as exc:
                how = f"authentication ({exc})"
            else:
                how = "authentication"
                if isinstance(message, dict):
                    user, key = message.get("user"), message.get("key")
                else:
                    how = "authentication (not a JSON object)"
        failure_key = (address, creds.names_user(user))
        if self._locked_out(failure_key):
            await self._answer(ws, LOCKED_OUT, CLOSE_LOCKED_OUT, "too many failures")
            return False
        if creds.check(user, key):
            await self._answer(ws, AUTHENTICATED, 0, "")
            return True
        # The delay is outside auth_timeout: a guess is never answered sooner.
        await self._auth_failed(failure_key, how)
        await self._answer(ws, AUTH_FAILED, CLOSE_UNAUTHORIZED, "authentication failed")
        return False


def _user_label(key: FailureKey) -> str:
    return "the configured user" if key[1] else "another or no user name"
