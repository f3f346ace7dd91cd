"""The task that acts for a connection's :class:`~streamer_bybit.book_keeper.BookKeeper`:
reports its book gaps, resubscribes its broken books and judges their silence.

One per session, next to the reader, the heartbeat and the subscriber. The keeper wakes it
(``books.changed``) when a read broke a book or closed a gap; otherwise it sleeps until the
next book could turn stale or a spaced resubscribe is due. A resubscribe that gets no ack
in time (or a closed socket) ends the session like any failed subscribe: the connection
reconnects, and every book starts over from the new session's snapshots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from streamer import Emit, Metrics, RateLimitedLog, Sample
from streamer.net import WebSocket, WebSocketClosed
from streamer_bybit.book_depths import stale_after_s
from streamer_bybit.book_keeper import BookKeeper
from streamer_bybit.subscription import AckTimeout

if TYPE_CHECKING:
    from streamer_bybit.config import BybitConfig
    from streamer_bybit.connection import BybitConnection, ConnectionSettings


def book_keeper_for(settings: ConnectionSettings, topics: Sequence[str], metrics: Metrics,
                    log: RateLimitedLog, name: str) -> BookKeeper | None:
    """The keeper of a connection's ``orderbook`` topics (None: the source streams no
    books). A connection that carries none yet has one too: a listing may add some."""
    if settings.book_depth is None:
        return None
    prefix = f"orderbook.{settings.book_depth}."
    symbols = [t[len(prefix):] for t in topics if t.startswith(prefix)]
    return BookKeeper(settings.channel, settings.book_depth, symbols,
                      settings.book_stale_after, metrics, log, name)


def book_stale_after(config: BybitConfig, category: str) -> float:
    """Seconds of silence after which a book is stale: ``book_stale_s``, else the depth's
    default, plus the reader's coalescing wait (messages wait that long in the socket)."""
    base = config.book_stale_s
    if base is None:
        base = stale_after_s(category, config.book_depth)
    return base + config.coalesce_ms / 1000.0


def book_samples(connections: Sequence[BybitConnection]) -> list[Sample]:
    """``book_stale_seconds``, read at scrape time (the other book counters are plain
    counters of the node's metrics)."""
    books = [c.books for c in connections if c.books is not None]
    if not books:
        return []
    return [Sample("book_stale_seconds", sum(b.stale_seconds for b in books), kind="counter",
                   help="Seconds order books spent silent past their staleness limit, from "
                        "their last message to their fresh snapshot")]


async def run_book_worker(conn: BybitConnection, ws: WebSocket, books: BookKeeper) -> None:
    emit = conn.outlet.emit
    await _report_gaps(emit, books)  # the gaps the lost session opened
    await conn.subscribed.wait()
    for topic in conn.refused:
        if topic.startswith("orderbook."):
            books.forget(topic.rpartition(".")[2])
    books.arm(trio.current_time())
    while True:
        await _report_gaps(emit, books)
        for symbol in books.take_resync(trio.current_time()):
            try:
                await conn.subscription.resubscribe(ws, books.topic(symbol))
            except (WebSocketClosed, AckTimeout) as exc:
                conn._fail(exc)
                return
            if books.topic(symbol) in conn.refused:
                books.forget(symbol)
            else:
                books.resubscribed(symbol, trio.current_time())
        await _report_gaps(emit, books)
        now = trio.current_time()
        resync = books.next_resync()
        if books.gaps or (resync is not None and resync <= now):
            continue  # came in meanwhile (no checkpoint from here on)
        books.changed = changed = trio.Event()
        deadlines = [d for d in (books.next_deadline(), resync) if d is not None]
        with trio.move_on_at(min(deadlines, default=math.inf)):
            await changed.wait()
        if changed.is_set():
            continue
        if conn._emitting:  # held downstream: judged once the reader reads again
            await trio.sleep(books.stale_after)
        else:
            books.stale(trio.current_time())


async def _report_gaps(emit: Emit, books: BookKeeper) -> None:
    for gap in books.take_gaps():
        await emit.gap(gap)


__all__ = ["run_book_worker"]
