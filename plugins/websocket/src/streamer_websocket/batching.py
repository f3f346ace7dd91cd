"""The tick of batched clients: everything due to them, at most once per ``batch_interval``.

A client that asks ``{"op": "batch"}`` (the web view does) takes no part in the fan-out of
each inbox drain. The fan-out hands the envelopes to the :class:`Ticker` instead, which holds
those some batched client selects (the rest are let go at once), and each tick selects from
them once per distinct subscription (clients with equal
subscriptions share one :class:`TickBatch`: one selection, one coalescing, one JSON text
and one set of frame bytes) and writes to each client that has anything due, at once when its
socket takes it. So the cost of a viewer is one write per tick, whatever the rate of the
data, instead of a task wake-up and a send per inbox drain.

The tick also bounds their writes: one that has lasted ``send_timeout`` is cut at the next
tick (a cancel scope per write cost as much as the write itself).

A batched client may ask for only the latest item per channel and symbol of data types whose
items are whole states (``{"op": "batch", "latest": ["ticker"]}``; :data:`LATEST_TYPES`): a
view shows the latest ticker, so the tick conflates the tickers of its selection (once per
group, like the selection) and sends one per symbol instead of every one that came.

And it pushes the status to the clients that asked ``{"op": "status", "push": true}`` (the
web view does), once per :data:`STATUS_PUSH_INTERVAL`: one JSON text for all of them, in the
same write as the tick's data for a batched client, instead of a request read, decoded and
answered per client and second.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import trio

from streamer_websocket.client import SHORT_SYMBOL_KEY, Client, FilterCache, coalesce, select
from streamer_websocket.envelope import Envelope
from streamer_websocket.frames import text_frames

#: Seconds between two status pushes (the page showed a status polled once a second).
STATUS_PUSH_INTERVAL = 1.0

#: The group of clients that never subscribed (they get everything).
_EVERYTHING: Hashable = object()
#: A (channel, data_type) no batched client selects; one not worked out yet.
_UNWANTED: Any = object()
_UNKNOWN: Any = object()

#: Data types whose every item is the whole state of its symbol (a ticker is the source's
#: merged snapshot; a price, a derivatives state), so the latest one of a tick says all the
#: earlier ones did: the ones ``{"op": "batch", "latest": [...]}`` may name. Never trades,
#: liquidations or funding (events: each one counts), klines (a tick may close one candle
#: and open the next) or books (deltas).
LATEST_TYPES = ("derivatives", "price", "ticker")


def conflate(envelopes: list[Envelope], latest: frozenset[str]) -> list[Envelope]:
    """``envelopes`` with the items of data types in ``latest`` cut to the last one per
    channel and symbol: one envelope per (channel, data type), where its first one was,
    the symbols in order of first appearance. Other envelopes are kept as they are."""
    merged: dict[tuple[str, str], dict[Any, dict[str, Any]]] = {}
    first: dict[tuple[str, str], int] = {}
    several: set[tuple[str, str]] = set()
    out: list[Envelope] = []
    for env in envelopes:
        if env.data_type not in latest:
            out.append(env)
            continue
        by_symbol = merged.get(env.key)
        if by_symbol is None:
            by_symbol = merged[env.key] = {}
            first[env.key] = len(out)
            out.append(env)
        else:
            several.add(env.key)
        for item in env.data:
            by_symbol[item.get("symbol")] = item
    if not merged:
        return envelopes
    for key, by_symbol in merged.items():
        at = first[key]
        if key in several or len(by_symbol) != len(out[at].data):
            out[at] = Envelope(key[0], key[1], list(by_symbol.values()))
    return out


class TickBatch:
    """One tick's selection for one subscription; its frames are built once, when the
    first of its clients sends. Immutable once handed out."""

    __slots__ = ("_frames", "envelopes", "max_chars", "messages")

    def __init__(self, envelopes: list[Envelope], max_chars: int) -> None:
        self.envelopes = envelopes
        self.max_chars = max_chars
        #: Messages in :meth:`frames` (known once they are built).
        self.messages = 0
        self._frames: bytes | None = None

    def frames(self) -> bytes:
        """The selection coalesced (one message per channel and data type, split past
        ``max_message_size``), as ready-made text frames."""
        if self._frames is None:
            texts = coalesce(self.envelopes, self.max_chars)
            self.messages = len(texts)
            self._frames = text_frames(texts)
        return self._frames


_NOTHING = TickBatch([], 1)


class Ticker:
    def __init__(self, interval: float, max_message_chars: int,
                 unbatched: set[Client] | None = None) -> None:
        self.interval = interval
        self.max_message_chars = max_message_chars
        #: The batched clients.
        self.clients: set[Client] = set()
        #: The clients the fan-out offers to directly (the sink's): a client that asks for
        #: batches leaves it.
        self.unbatched: set[Client] = set() if unbatched is None else unbatched
        #: Envelopes of the fan-outs since the last tick that some batched client's
        #: subscription selects, in order.
        self.pending: list[Envelope] = []
        #: (channel, data_type) -> the symbols any batched client selects of it (None:
        #: all; _UNWANTED: none), worked out when first seen since the batched clients or
        #: a subscription of one last changed.
        self._wanted: dict[tuple[str, str], Any] = {}
        #: The clients the status is pushed to, and the status reply's text (None: the
        #: sink offers no status).
        self.status_clients: set[Client] = set()
        self.status_text: Callable[[], str] | None = None
        self._status_due = 0.0

    def add(self, client: Client, latest: frozenset[str] = frozenset()) -> None:
        """Batch ``client`` from now on (what is pending was offered to it already), with
        only the latest item per channel and symbol of the data types ``latest`` names,
        from this tick on. Asking again changes ``latest`` only."""
        client.latest = latest
        if client.batched:
            return
        client.batched = True
        client.tick_start = len(self.pending)
        self.clients.add(client)
        self.unbatched.discard(client)
        self._wanted.clear()

    def discard(self, client: Client) -> None:
        self.clients.discard(client)
        self.status_clients.discard(client)
        self._wanted.clear()

    def push_status(self, client: Client, on: bool) -> None:
        """Push the status to ``client`` from the next push on (or stop)."""
        if on and self.status_text is not None:
            self.status_clients.add(client)
        else:
            self.status_clients.discard(client)

    def settle(self, client: Client) -> None:
        """Queue for ``client`` what its subscription selects of the pending envelopes not
        handed to it yet; called before the subscription changes, so the data from before
        a change is selected as it was then (and the snapshot of a subscribe comes after
        it), as for a client that is not batched."""
        if client.batched:
            self._wanted.clear()  # the subscription changes next (no checkpoint between)
        start = client.tick_start
        if not client.batched or start >= len(self.pending):
            return
        client.tick_start = len(self.pending)
        selected = self._select(self.pending[start:], client, {})
        if selected:
            client.enqueue(selected)

    def collect(self, envelopes: list[Envelope]) -> None:
        """One fan-out's envelopes: held until the next tick if some batched client's
        subscription selects them, let go at once otherwise (a viewer of one symbol's trades
        does not hold every symbol's for a tick, nor the tick's selection go through them)."""
        if not self.clients:
            return
        wanted = self._wanted
        pending = self.pending
        for env in envelopes:
            symbols = wanted.get(env.key, _UNKNOWN)
            if symbols is _UNKNOWN:
                symbols = wanted[env.key] = self._wanted_symbols(env.key)
            if symbols is None:
                pending.append(env)
            elif symbols is not _UNWANTED:
                field = "s" if env.data_type in SHORT_SYMBOL_KEY else "symbol"
                for item in env.data:
                    if item.get(field) in symbols:
                        pending.append(env)
                        break

    def _wanted_symbols(self, key: tuple[str, str]) -> Any:
        """The symbols of ``key`` some batched client selects (None: all; _UNWANTED)."""
        union: set[str] = set()
        wanted = False
        for client in self.clients:
            sub = client.subscription
            if sub is None:
                return None
            if key in sub:
                symbols = sub.symbols(key)
                if symbols is None:
                    return None
                union |= symbols
                wanted = True
        return frozenset(union) if wanted else _UNWANTED

    async def run(self) -> None:
        while True:
            await trio.sleep(self.interval)
            self.tick()

    def tick(self) -> None:
        """Hand every batched client its share of what came since the last tick (the
        client writes it at once), and cut a client whose write lasted send_timeout."""
        envelopes, self.pending = self.pending, []
        now = trio.current_time()
        if self.status_clients and now >= self._status_due and self.status_text is not None:
            self._status_due = now + STATUS_PUSH_INTERVAL - self.interval / 2
            text = self.status_text()
            for client in list(self.status_clients):
                client.reply_text(text)  # queued: the write below takes it
        for client, batch in self.share(envelopes):
            since = client.writing_since
            if since is not None and now - since >= client.send_timeout:
                client.kick(f"a send took longer than {client.send_timeout}s",
                            "slow_client_disconnects")
                continue
            client.offer_batch(batch)

    def share(self, envelopes: list[Envelope]) -> list[tuple[Client, TickBatch]]:
        """Each batched client's share of ``envelopes``: one selection per distinct
        subscription and ``latest``, one of its own for a client batched or settled since
        the last tick (the envelopes offered to it already left out)."""
        out: list[tuple[Client, TickBatch]] = []
        groups: dict[Hashable, TickBatch] = {}
        cache: FilterCache = {}
        for client in self.clients:
            start = client.tick_start
            if start:
                client.tick_start = 0
                rest = envelopes[start:]
                out.append((client, TickBatch(self._select(rest, client, cache),
                                              self.max_message_chars) if rest else _NOTHING))
                continue
            if not envelopes:
                out.append((client, _NOTHING))  # replies and snapshots are due too
                continue
            sub = client.subscription
            signature = _EVERYTHING if sub is None else sub.signature()
            group = None if signature is None else (signature, client.latest)
            batch = None if group is None else groups.get(group)
            if batch is None:
                batch = TickBatch(self._select(envelopes, client, cache),
                                  self.max_message_chars)
                if group is not None:
                    groups[group] = batch
            out.append((client, batch))
        return out

    @staticmethod
    def _select(envelopes: list[Envelope], client: Client,
                cache: FilterCache) -> list[Envelope]:
        """What ``client``'s subscription selects, conflated as it asked."""
        selected = select(envelopes, client.subscription, cache)
        return conflate(selected, client.latest) if client.latest else selected
