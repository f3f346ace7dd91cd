"""What a served client says and is asked: its reader (subscribe / unsubscribe, batch, pings, late
credentials) and its pinger. Replies go through the client's own bounded reply queue, so a
client that sends much and reads little only hurts itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed

from streamer import Metrics, RateLimitedLog
from streamer_websocket.batching import LATEST_TYPES, Ticker
from streamer_websocket.client import Client
from streamer_websocket.client_json import BadClientJSON, decode_client_json
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.gate import CLOSE_MESSAGE_TOO_BIG, Gate
from streamer_websocket.snapshot import SnapshotStore
from streamer_websocket.subscription import (
    Subscription,
    SubscriptionError,
    everything,
    parse_args,
)

_json = msgspec.json.Encoder()


class Session:
    def __init__(self, config: WebSocketConfig, metrics: Metrics, log: RateLimitedLog,
                 snapshot: SnapshotStore, gate: Gate, ticker: Ticker,
                 status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.config = config
        #: Answers ``{"op": "status"}`` (the web view's status); None: not offered.
        self._status = status
        #: The last status answered and its reply's text: encoded once for every client
        #: asking while the status board serves the same one.
        self._status_data: dict[str, Any] | None = None
        self._status_text = ""
        #: Serves the clients that ask ``{"op": "batch"}``.
        self._ticker = ticker
        self.metrics = metrics
        self.snapshot = snapshot
        self._log = log
        #: Checks credentials sent once connected, and counts their failures.
        self._gate = gate

    async def read_loop(self, client: Client) -> None:
        while True:
            try:
                raw = await client.ws.get_message()
            except ConnectionClosed as exc:
                if exc.reason is not None and exc.reason.code == CLOSE_MESSAGE_TOO_BIG:
                    # trio-websocket has closed it with 1009 already; counted like bad JSON.
                    self.metrics.inc("bad_client_messages")
                    self._log.warning("bad_message", "websocket client %s: message over %d "
                                      "bytes, closed with 1009", client.address,
                                      self.config.max_client_message)
                if not client.closing:
                    client.cancel_scope.cancel()
                return
            self._on_message(client, raw)

    async def ping_loop(self, client: Client) -> None:
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
        self._log.warning("bad_message", "websocket client %s: %s", client.address, error)
        client.reply(reply)

    def _on_message(self, client: Client, raw: str | bytes) -> None:
        try:
            message = decode_client_json(raw)
        except BadClientJSON as exc:
            self._bad_message(client, str(exc), {"error": str(exc)})
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
        elif op == "status" and self._status is not None:
            push = message.get("push")
            if push is not None:
                self._ticker.push_status(client, push is True)
            client.reply_text(self.status_text())
        elif op == "batch":
            latest = message.get("latest", [])
            if not (isinstance(latest, list) and len(latest) <= len(LATEST_TYPES)
                    and all(name in LATEST_TYPES for name in latest)):
                error = f"latest must be a list of data types among {', '.join(LATEST_TYPES)}"
                self._bad_message(client, f"bad batch: {error}",
                                  {"op": "batch", "success": False, "error": error})
                return
            self._ticker.add(client, frozenset(latest))
            client.reply({"op": "batch", "success": True, "interval": self._ticker.interval,
                          "latest": sorted(client.latest)})
        elif "user" in message or "key" in message:
            # Older clients may (re)send credentials once connected: answer, never close.
            creds = self._gate.credentials
            user = message.get("user")
            if creds is None or creds.check(user, message.get("key")):
                client.reply({"status": "authenticated"})
            else:
                self._gate.count_failure((client.address, creds.names_user(user)),
                                         "authentication (in session)")
                client.reply({"error": "Authentication failed"})
        else:
            self._bad_message(
                client,
                f"unknown request {str(message)[:80]}",
                {"error": 'unknown request: expected "op" subscribe/unsubscribe/ping/batch '
                          'or "type": "ping"'},
            )

    def status_text(self) -> str:
        """The status reply's JSON text (``{"op": "status", "data": ...}``); encoded once
        per status built, for every client asking or pushed to."""
        assert self._status is not None
        data = self._status()
        if data is not self._status_data:
            self._status_data = data
            self._status_text = _json.encode({"op": "status", "data": data}).decode()
        return self._status_text

    def _on_subscription(self, client: Client, op: str, raw_args: Any) -> None:
        # In place and in O(request): the held set is never copied.
        sub = client.subscription
        self._ticker.settle(client)  # what came before the change, selected as before it
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
            client.enqueue(self.snapshot.envelopes(Subscription.of(args), sub.fields))
