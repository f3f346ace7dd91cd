"""Changing a connection's topics while it runs (live instrument discovery), and the
liquidations' stream gaps: the part of :class:`~streamer_bybit.connection.BybitConnection`
that is not its read loop.

A topic added is subscribed on the open socket at once (after the start-up subscribe if that
is still going: requests take turns), else by the next session; a topic removed is
unsubscribed from the open socket and left out of every later session. The other topics of
the connection, and the other connections, are not touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import trio

from streamer import Metrics
from streamer.net import WebSocket, WebSocketClosed
from streamer_bybit.liquidations import LiquidationFeed
from streamer_bybit.subscription import AckTimeout, Subscription

if TYPE_CHECKING:
    from streamer_bybit.book_keeper import BookKeeper
    from streamer_bybit.connection_settings import ConnectionSettings
    from streamer_bybit.decode import MessageDecoder
    from streamer_bybit.outlet import Outlet
    from streamer_bybit.recovery import GapRecovery
    from streamer_bybit.tickers import TickerBook


class LiveTopics:
    """Mixed into :class:`~streamer_bybit.connection.BybitConnection`."""

    topics: list[str]
    trade_symbols: tuple[str, ...]
    settings: ConnectionSettings
    metrics: Metrics
    subscription: Subscription
    subscribed: trio.Event
    recovery: GapRecovery | None
    liquidations: LiquidationFeed | None
    decoder: MessageDecoder
    book: TickerBook
    books: BookKeeper | None
    outlet: Outlet
    _ws: WebSocket | None

    def _fail(self, cause: BaseException) -> None:
        raise NotImplementedError

    async def add_topics(self, topics: list[str],
                         trade_symbols: Iterable[str] | None = None) -> None:
        """Stream ``topics`` too: subscribed on the open socket now (the others stay as they
        are), else by the next session. ``trade_symbols``: as in the constructor."""
        new = [t for t in dict.fromkeys(topics) if t not in self.topics]
        self.topics.extend(new)
        self.topics_changed(trade_symbols)
        if self.books is not None:  # an order book waits for the subscribe's snapshot
            for topic in new:
                if topic.startswith("orderbook."):
                    self.books.add(topic.rpartition(".")[2], trio.current_time())
        ws = self._ws
        if ws is not None and self.subscribed.is_set():
            try:
                await self.subscription.subscribe_all(ws)
            except (WebSocketClosed, AckTimeout) as exc:
                self._fail(exc)

    async def remove_topics(self, topics: list[str],
                            trade_symbols: Iterable[str] | None = None) -> None:
        """Stop streaming ``topics`` (a delisted symbol's): unsubscribed on the open socket,
        left out of every later session; nothing of their symbols is kept (memory stays
        flat however many symbols come and go)."""
        gone = set(topics)
        self.topics[:] = [t for t in self.topics if t not in gone]  # the subscription's list
        before = set(self.trade_symbols)
        self.topics_changed(trade_symbols)
        ws = self._ws
        if ws is not None and self.subscribed.is_set():
            try:
                await self.subscription.unsubscribe(ws, list(gone))
            except (WebSocketClosed, AckTimeout) as exc:
                self._fail(exc)
        # Only now: their messages read before the unsubscribe's ack found their state.
        await self._forget(gone, before - set(self.trade_symbols))

    async def _forget(self, topics: set[str], trade_symbols: set[str]) -> None:
        """Drop what was kept of the symbols of ``topics``, removed from this connection
        (``trade_symbols``: those whose trades it no longer carries)."""
        for topic in topics:
            self.subscription.refused.pop(topic, None)
        symbols = {t.rpartition(".")[2] for t in topics}
        self.book.forget(symbols)
        if self.books is not None:
            for topic in topics:
                if topic.startswith("orderbook."):
                    self.books.forget(topic.rpartition(".")[2])
        if self.liquidations is not None:
            self.liquidations.forget(symbols)
        if self.recovery is not None:
            await self.recovery.forget(trade_symbols)

    def topics_changed(self, trade_symbols: Iterable[str] | None) -> None:
        """The topics changed: what the trade topics carry (``trade_symbols`` when a trade
        topic is not one symbol's), and the liquidation topics."""
        self.trade_symbols = tuple(trade_symbols) if trade_symbols is not None else tuple(
            t.partition(".")[2] for t in self.topics if t.startswith("publicTrade.")
        )
        if self.recovery is not None:
            self.recovery.trade_symbols = self.trade_symbols
        liquidation_symbols = tuple(
            t.partition(".")[2] for t in self.topics if t.startswith("allLiquidation.")
        )
        if self.liquidations is None and liquidation_symbols:
            self.liquidations = LiquidationFeed(self.settings.channel, (), self.metrics)
            self.decoder.liquidations = self.liquidations
        if self.liquidations is not None:
            self.liquidations.symbols = liquidation_symbols

    async def _liquidation_gap(self, *, opened: bool) -> None:
        """Report the liquidations' stream gap opening (connection lost) or closing."""
        feed = self.liquidations
        if feed is None:
            return
        gap = feed.open_gap() if opened else feed.close_gap()
        if gap is not None:
            if opened:
                self.metrics.inc("liquidation_gaps")
            await self.outlet.gap(gap)

