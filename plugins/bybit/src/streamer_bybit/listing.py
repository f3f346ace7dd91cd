"""Live instrument discovery: with ``symbols = "all"`` or a pattern (or
``load_all_symbols``), the source re-reads the instrument list every ``refresh_symbols_s``
and follows it without reconnecting anything:

* a symbol listed since (status ``Trading``, matching, in this shard, under
  ``symbols_limit``) has its topics added to the connections that have room (the same
  ``topics_per_connection`` and args budget as at start), subscribed on their open sockets;
  past the room, new connections are opened (paced by the same ``connect_rate``);
* a symbol gone from the list (delisted, or any status but ``Trading``: suspended, settling)
  has its topics unsubscribed from its connection's open socket, and downstream hears that
  its stream ended (a :class:`streamer.StreamGap` with ``ended=True``: the aggregator closes
  its candles and forgets it).

Each change is logged and counted (``symbols_listed``, ``symbols_delisted``). A failed or
empty re-read changes nothing (``rest_failures``; an empty list is taken for a bad answer:
it would unsubscribe everything).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from streamer import StreamGap
from streamer.clock import now_ms
from streamer_bybit.connection import REST_ERRORS
from streamer_bybit.recovery import describe
from streamer_bybit.rest import matching_symbols
from streamer_bybit.shard import shard_symbols
from streamer_bybit.topics import MAX_ARGS_CHARS, pool_topics

if TYPE_CHECKING:
    from streamer_bybit.source import BybitSource


def topic_symbol(topic: str) -> str:
    """The symbol a topic names (its last part: ``kline.1.BTCUSDT`` -> ``BTCUSDT``)."""
    return topic.rpartition(".")[2]


class SymbolListing:
    """Follows the instrument list of one source (see the module doc)."""

    def __init__(self, source: BybitSource) -> None:
        self.source = source

    async def run(self) -> None:
        source = self.source
        every = source.config.refresh_symbols_s
        while True:
            await trio.sleep(every)
            await self.refresh()

    async def refresh(self) -> None:
        """Re-read the list once and follow it."""
        source, config = self.source, self.source.config
        pattern = config.symbol_pattern()
        assert pattern is not None
        try:
            instruments = await source._instruments()
        except REST_ERRORS as exc:
            source.metrics.inc("rest_failures")
            source.logger.warning("%s: cannot re-read the %s instruments (%s); the symbols "
                                  "stay as they are", source.context.name, source.category,
                                  describe(exc))
            return
        listed = shard_symbols(matching_symbols(instruments, pattern), config.shard)
        if not listed:
            source.logger.warning("%s: the %s instrument list came back empty; the symbols "
                                  "stay as they are", source.context.name, source.category)
            return
        keep = set(listed)
        gone = [s for s in source.symbols if s not in keep]
        current = set(source.symbols)
        new = [s for s in listed if s not in current]
        if config.symbols_limit is not None:
            new = new[: max(0, config.symbols_limit - len(current) + len(gone))]
        if gone:
            await self.delist(gone, streamed=[*(s for s in source.symbols if s in keep), *new])
        if new:
            await self.add(new)
        if (gone or new) and source.category == "option":
            # publicTrade.<COIN> carries the coin's new options too: what a gap concerns.
            for connection in source.connections:
                connection.topics_changed(source.trade_symbols_of(connection.topics))

    async def delist(self, symbols: list[str], streamed: list[str]) -> None:
        """Unsubscribe ``symbols`` (``streamed``: every symbol streamed from now on)."""
        source = self.source
        gone = set(symbols)
        source.symbols = [s for s in source.symbols if s not in gone]
        source.metrics.inc("symbols_delisted", len(symbols))
        source.logger.info("%s: %d %s symbols delisted or no longer trading, unsubscribed: "
                           "%s", source.context.name, len(symbols), source.category,
                           ", ".join(symbols))
        coin_topics: set[str] = set()  # options: the trades of a coin none of whose is left
        if source.category == "option":
            coins = {source.option_coins.get(s, s.partition("-")[0]) for s in streamed}
            coin_topics = {t for c in source.connections for t in c.topics
                           if t.startswith("publicTrade.") and topic_symbol(t) not in coins}
        for connection in source.connections:
            topics = [t for t in connection.topics
                      if topic_symbol(t) in gone or t in coin_topics]
            if topics:
                rest = [t for t in connection.topics if t not in topics]
                await connection.remove_topics(topics, source.trade_symbols_of(rest))
        # Downstream: these symbols' stream ended (candles close, state is forgotten).
        await source.emit_gap(StreamGap(source.category, tuple(symbols), now_ms(),
                                        closed=True, ended=True))

    async def add(self, symbols: list[str]) -> None:
        source = self.source
        source.symbols.extend(symbols)
        source.metrics.inc("symbols_listed", len(symbols))
        source.logger.info("%s: %d new %s symbols listed, subscribing: %s",
                           source.context.name, len(symbols), source.category,
                           ", ".join(symbols))
        on = {t for c in source.connections for t in c.topics}
        topics = [t for t in source.topics_of(symbols) if t not in on]
        per = source.config.topics_per_connection
        for connection in source.connections:
            if not topics:
                return
            chars = sum(len(t) + 3 for t in connection.topics)
            room = 0
            while (room < len(topics) and len(connection.topics) + room < per
                   and chars + len(topics[room]) + 3 < MAX_ARGS_CHARS):
                chars += len(topics[room]) + 3
                room += 1
            if room:
                mine, topics = topics[:room], topics[room:]
                after = connection.topics + mine
                await connection.add_topics(mine, source.trade_symbols_of(after))
        for pool in pool_topics(topics, per):
            source.open_connection(pool)


__all__ = ["SymbolListing", "topic_symbol"]
