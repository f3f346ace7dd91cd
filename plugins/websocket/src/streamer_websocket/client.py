"""One connected client: its subscription, its bounded queue and its sender task.

The pipeline side only ever calls :meth:`Client.offer`, which appends to a deque and wakes the
sender: it never awaits, so a client that stops reading cannot slow the pipeline or the other
clients. The sender takes a bounded prefix of its queue at a time (so the text in flight stays
small whatever is queued), merges envelopes of one channel and data type into one message,
and sends with a timeout. Control replies go first and have their own small bound: a client
that lets them pile up is closed with 1008.

A *batched* client (it asked with ``{"op": "batch"}``, as the web view does) takes no part in
the fan-out: the sink's tick (:mod:`streamer_websocket.batching`) hands it what it selected
at most once per ``batch_interval`` and writes everything due (replies first) in one write of
ready-made frames, those of the tick shared with every client of the same subscription; at
once when its socket takes it, so no task is woken. Only what the socket does not take (or a
write behind another send, or over TLS) is left to the client's sender task. The bounds are
the same: the queue, the drops, the send timeout.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import trio
import trio.lowlevel
from trio_websocket import ConnectionClosed, WebSocketConnection

from streamer import Metrics
from streamer_websocket.envelope import Envelope, coalesced_text
from streamer_websocket.frames import backlogged, send_frames, text_frames, write_nowait
from streamer_websocket.subscription import Subscription

if TYPE_CHECKING:
    from streamer_websocket.batching import TickBatch

_json = msgspec.json.Encoder()

CLOSE_POLICY_VIOLATION = 1008
#: The sender turns at most this many times ``max_message_chars`` of queued data into text
#: at once; the rest stays queued as envelopes (shared references, no text of its own).
#: Each take may end a message early, so fewer takes mean fewer, fuller messages: with 8, a
#: lagging client's drain of 400 queued batches cost the same CPU as one unbounded drain
#: (with 4 it cost ~30% more), while the text in flight stays bounded.
DRAIN_MESSAGES = 8

#: Cache of filtered (per symbol) and projected (per field) envelopes for one fan-out or
#: tick, shared by every client with equal symbols and fields: (id of the envelope, its
#: symbols or None for all, its fields or None for all) -> what is left of it.
FilterCache = dict[tuple[int, "frozenset[str] | None", "frozenset[str] | None"],
                   "Envelope | None"]


#: Data types whose items name their symbol ``s`` (Bybit's short keys); others ``symbol``.
SHORT_SYMBOL_KEY = frozenset({"trades", "liquidations"})


def project(data: list[dict[str, Any]], fields: frozenset[str]) -> list[dict[str, Any]]:
    """``data``'s items with only their keys in ``fields`` (in their own order)."""
    return [{k: v for k, v in item.items() if k in fields} for item in data]


def filter_envelope(env: Envelope, symbols: frozenset[str] | None,
                    fields: frozenset[str] | None = None) -> Envelope | None:
    """``env``'s items of ``symbols`` (None: all), each cut to ``fields`` (None: all); None
    if no item is left, ``env`` itself if nothing was taken out."""
    data = env.data
    if symbols is not None:
        field = "s" if env.data_type in SHORT_SYMBOL_KEY else "symbol"
        data = [item for item in data if item.get(field) in symbols]
        if not data:
            return None
    if fields is not None:
        data = project(data, fields)
    elif len(data) == len(env.data):
        return env
    return Envelope(env.channel, env.data_type, data)


def select(envelopes: list[Envelope], sub: Subscription | None,
           cache: FilterCache) -> list[Envelope]:
    """What ``sub`` selects of ``envelopes`` (its symbols, each item cut to its fields);
    filtered envelopes are shared through ``cache`` by every client with the same symbols
    and fields, so each is built once per fan-out or tick, never per client."""
    if sub is None:
        return envelopes
    selected: list[Envelope] = []
    projections = sub.fields
    for env in envelopes:
        if env.key not in sub:
            continue
        symbols = sub.symbols(env.key)
        fields = projections.get(env.data_type) if projections else None
        if symbols is None and fields is None:
            selected.append(env)
            continue
        cache_key = (id(env), symbols, fields)
        if cache_key in cache:
            filtered = cache[cache_key]
        else:
            filtered = cache[cache_key] = filter_envelope(env, symbols, fields)
        if filtered is not None:
            selected.append(filtered)
    return selected


def coalesce(envelopes: Sequence[Envelope], max_chars: int = 256 * 1024) -> list[str]:
    """One text per (channel, data_type), in order of first appearance, data in queue order.

    A group whose data grows past ``max_chars`` continues in another message: common
    clients refuse messages over 1 MiB (trio-websocket's and websockets' default limit).
    """
    return take_coalesced(deque(envelopes), max_chars, math.inf)


def take_coalesced(queue: deque[Envelope], max_chars: int, budget: float) -> list[str]:
    """Pop envelopes from ``queue`` up to ``budget`` characters of data (at least one) and
    return them coalesced as :func:`coalesce` does; the rest stays queued."""
    groups: dict[tuple[str, str], list[list[Envelope]]] = {}
    sizes: dict[tuple[str, str], int] = {}
    total = 0
    taken = 0
    for env in queue:
        size = len(env.data_text())
        total += size
        if total > budget and taken:
            break
        taken += 1
        key = env.key
        chunks = groups.get(key)
        if chunks is None:
            groups[key] = [[env]]
            sizes[key] = size
        elif sizes[key] + size > max_chars:
            chunks.append([env])
            sizes[key] = size
        else:
            chunks[-1].append(env)
            sizes[key] += size
    if taken == len(queue):
        queue.clear()
    else:
        for _ in range(taken):
            queue.popleft()
    return [coalesced_text(chunk) for chunks in groups.values() for chunk in chunks]


class Client:
    """State of one authenticated connection."""

    def __init__(
        self,
        ws: WebSocketConnection,
        *,
        client_id: int,
        address: str,
        queue_size: int,
        max_dropped: int,
        max_replies: int = 64,
        send_timeout: float,
        max_message_chars: int,
        metrics: Metrics,
        cancel_scope: trio.CancelScope,
    ) -> None:
        self.ws = ws
        self.client_id = client_id
        #: The client's address (its proxy's forwarded one if trusted), for limits and logs.
        self.address = address
        self.subscription: Subscription | None = None
        self.queue: deque[Envelope] = deque()
        self.control: deque[str] = deque()
        self.queue_size = queue_size
        self.max_replies = max_replies
        self.max_dropped = max_dropped
        self.send_timeout = send_timeout
        self.max_message_chars = max_message_chars
        self.metrics = metrics
        self.cancel_scope = cancel_scope
        #: Envelopes dropped since the last completed drain; reset by the sender.
        self.dropped_since_send = 0
        self.dropped_total = 0
        #: Why the server disconnected this client forcefully, if it did.
        self.kicked: str | None = None
        #: Close code to try (briefly) before cutting a kicked client, if any.
        self.kick_code: int | None = None
        #: Set at shutdown: the sender sends what is queued, then returns.
        self.closing = False
        #: Asked for batches ({"op": "batch"}): sent to only when the sink's tick wakes it.
        self.batched = False
        #: The tick's batch due to this client while nothing else is queued (shared).
        self.batch: TickBatch | None = None
        #: When its write in progress started (batched clients; None: not writing).
        self.writing_since: float | None = None
        #: A batched client's write the tick handed to its sender task (frames, messages).
        self.outgoing: tuple[bytes, int] | None = None
        #: Data types of which a batched client gets only the latest item per channel and
        #: symbol of each tick (``{"op": "batch", "latest": [...]}``).
        self.latest: frozenset[str] = frozenset()
        #: How many of the tick's pending envelopes were offered to it already (it became
        #: batched, or its subscription changed, since the last tick).
        self.tick_start = 0
        self._wakeup = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<Client {self.client_id} {self.address}>"

    # -- called from the pipeline side: never awaits -------------------------------------

    def offer(self, envelopes: list[Envelope], cache: FilterCache) -> None:
        """Queue what this client's subscription selects from one fan-out."""
        selected = select(envelopes, self.subscription, cache)
        if selected:
            self.enqueue(selected)

    def offer_batch(self, batch: TickBatch) -> None:
        """A batched client's share of one tick; wakes its sender if anything is due.

        The tick's batch is held as it is (its frames are shared with every client of the
        same subscription) when nothing else is queued; behind other data (a snapshot, a
        backlog) its envelopes join the client's own bounded queue.
        """
        if self.kicked is not None:
            return
        if batch.envelopes:
            if self.batch is None and not self.queue:
                self.batch = batch
            else:
                self.enqueue(batch.envelopes)
                if self.kicked is not None:
                    return
        self._write_due()

    def _take_due(self) -> tuple[bytes, int]:
        """Everything due to a batched client, as frames (the replies first), and how many
        messages they hold: the tick's shared frames, or a bounded take of its own queue."""
        texts = list(self.control)
        self.control.clear()
        parts = [text_frames(texts)] if texts else []
        messages = len(texts)
        batch, self.batch = self.batch, None
        if batch is not None:  # nothing else queued: offer_batch and enqueue see to it
            parts.append(batch.frames())
            messages += batch.messages
        elif self.queue:
            texts = take_coalesced(self.queue, self.max_message_chars,
                                   DRAIN_MESSAGES * self.max_message_chars)
            parts.append(text_frames(texts))
            messages += len(texts)
        return (parts[0] if len(parts) == 1 else b"".join(parts)), messages

    def _write_due(self) -> None:
        """The tick's write to a batched client: at once if its socket takes it (no task
        woken); else, or for what the socket did not take, its sender task writes it.
        Behind a write still in progress, what is due waits for the next tick."""
        if self.outgoing is not None or not self._due():
            return
        data, messages = self._take_due()
        if write_nowait(self.ws, data):
            self._written(messages, len(data))
            if backlogged(self.ws):
                self.metrics.inc("batched_backlogs")
                self.writing_since = trio.current_time()
                self._wakeup.unpark_all()
            return
        self.outgoing = (data, messages)
        self._wakeup.unpark_all()

    def _written(self, messages: int, size: int) -> None:
        self.metrics.inc("batched_writes")
        self.metrics.inc("batched_bytes", size)
        self.metrics.inc("sent_messages", messages)
        self.dropped_since_send = 0

    def enqueue(self, envelopes: list[Envelope]) -> None:
        if self.kicked is not None:
            return  # being disconnected: its handler removes it at the next checkpoint
        queue = self.queue
        if self.batch is not None:  # the tick's batch came first: keep the order
            queue.extend(self.batch.envelopes)
            self.batch = None
        queue.extend(envelopes)
        overflow = len(queue) - self.queue_size
        if overflow > 0:
            for _ in range(overflow):
                queue.popleft()
            self.dropped_since_send += overflow
            self.dropped_total += overflow
            self.metrics.inc("dropped_envelopes", overflow)
            if self.dropped_since_send > self.max_dropped:
                self.kick(f"too slow: dropped {self.dropped_since_send} envelopes",
                          "slow_client_disconnects")
                return
        if self._wakeup and not self.batched:
            self._wakeup.unpark_all()

    def reply(self, message: dict[str, Any]) -> bool:
        """Queue a control reply (ack, pong, error); sent before queued data.

        Past ``max_replies`` queued the client is not reading its answers: it is closed with
        1008 and False is returned, so the caller does no further work for it.
        """
        return self.reply_text(_json.encode(message).decode())

    def reply_text(self, text: str) -> bool:
        """:meth:`reply` with the reply's JSON text (one text shared by many clients)."""
        if self.kicked is not None:
            return False
        if len(self.control) >= self.max_replies:
            self.kick(f"more than {self.max_replies} replies unread",
                      "reply_overflow_disconnects", code=CLOSE_POLICY_VIOLATION)
            return False
        self.control.append(text)
        if self._wakeup and not self.batched:
            self._wakeup.unpark_all()
        return True

    def kick(self, reason: str, metric: str | None = None, code: int | None = None) -> None:
        """Disconnect forcefully; the connection handler closes the socket."""
        if self.kicked is not None:
            return
        self.kicked = reason
        self.kick_code = code
        # Nothing queued is sent any more: free it now, not when the handler ends.
        self.queue.clear()
        self.control.clear()
        self.batch = None
        self.outgoing = None
        if metric:
            self.metrics.inc(metric)
        self.cancel_scope.cancel()

    def close_gracefully(self) -> None:
        self.closing = True
        self._wakeup.unpark_all()

    # -- the client's own sender task ----------------------------------------------------

    def _due(self) -> bool:
        return bool(self.queue or self.control) or self.batch is not None

    async def send_loop(self) -> None:
        """Send until closing and drained; returns then. Kicks the client on a stuck send."""
        while True:
            while not self._due() and not self.batched:
                if self.closing:
                    return
                await self._wakeup.park()
            if self.batched:
                await self._batched_writes()
                return
            if not await self._send_messages():
                return
            self.dropped_since_send = 0

    async def _batched_writes(self) -> None:
        """A batched client's sender: writes what the tick could not write at once (a
        backlog, a write behind another send) and, at its close, what is due. Bounded by
        send_timeout through the tick's watch (Ticker.tick), not by a cancel scope per
        write: that cost as much as the write itself on a loopback socket."""
        while True:
            while self.outgoing is None and not backlogged(self.ws):
                if self.closing:
                    if not self._due():
                        return
                    self.outgoing = self._take_due()
                    break
                await self._wakeup.park()
            data, messages = self.outgoing or (b"", 0)
            self.outgoing = None
            self.writing_since = trio.current_time()
            try:
                await send_frames(self.ws, data)
            except ConnectionClosed:
                self.cancel_scope.cancel()
                return
            self.writing_since = None
            if messages:
                self._written(messages, len(data))

    async def _send_messages(self) -> bool:
        """Send the replies, then a bounded take of the queue, one message at a time."""
        texts = list(self.control)
        self.control.clear()
        if self.queue:
            texts.extend(take_coalesced(self.queue, self.max_message_chars,
                                        DRAIN_MESSAGES * self.max_message_chars))
        for text in texts:
            if not await self._bounded(self.ws.send_message(text)):
                return False
        self.metrics.inc("sent_messages", len(texts))
        return True

    async def _bounded(self, sending: Awaitable[None]) -> bool:
        """Await one send under send_timeout; False (the client cut) if it did not end."""
        with trio.move_on_after(self.send_timeout) as scope:
            try:
                await sending
            except ConnectionClosed:
                self.cancel_scope.cancel()
                return False
        if scope.cancelled_caught:
            self.kick(f"a send took longer than {self.send_timeout}s",
                      "slow_client_disconnects")
            return False
        return True
