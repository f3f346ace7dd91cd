"""History: how a transform asks the source that produced a stream about the past.

A transform never talks to an exchange. A source that can answer questions about the past of
its own stream (the candles of a symbol, its recent trades) offers a :class:`History` as its
``history`` attribute; it answers with its own client, endpoints, TLS settings and rate
limits. The core hands every transform a :class:`HistoryRouter` as ``context.history``,
filled with the ``history`` of the sources upstream of the transform's ``inputs`` (through
other transforms too), keyed by the channel each one serves. So::

    history = self.context.history.for_channel(trade.channel)
    if history is None:
        ...  # no input source can answer: do without
    else:
        candles = await history.candles(trade.channel, trade.symbol, 60_000, start_ms, limit=5)

A source that cannot answer a particular question (no such interval, not that channel)
raises :class:`HistoryUnavailable` with the reason; transient trouble (network, HTTP errors,
rate limits) raises :class:`HistoryError`. Callers bound the wait themselves (for example with
``trio.move_on_after``); a provider paces and limits its own requests.

**Stored history.** A sink that stores trades (a database) may offer a :class:`StoredHistory`
as its ``stored_history``: the core adds it to ``context.history.stored`` of every transform
that reads a source the sink takes directly (:class:`HistoryRouter`). Its one question is
narrower than a source's: the trades of one symbol stamped in ``[start_ms, until_ms)``,
summed, answered only when the store holds *every* one of them (it knows which time ranges
it wrote without a gap); otherwise it says it does not know (``None``) and the caller asks
the source's history instead. Several ranges of a symbol go in one question (one round trip
for all the first candles of a symbol). So::

    for stored in self.context.history.stored:
        answers = await stored.trades_summaries(channel, symbol, [(start_ms, first_ms)])
        if answers[0] is not None:
            ...  # exact: every trade before our first one
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from streamer._events import Trade


class HistoryUnavailable(Exception):
    """The source cannot answer this question at all (asking again will not help)."""


class HistoryError(Exception):
    """The source could not answer this time (network, HTTP, rate limit); the message names
    the cause."""


@attrs.frozen
class HistoryCandle:
    """One candle as the source's history reports it (the newest may still be open)."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    turnover: float


@attrs.frozen
class Candles:
    """Candles of one symbol and interval, oldest first, as they stood at ``snapshot_ms``
    (the source's clock when it answered)."""

    interval_ms: int
    rows: tuple[HistoryCandle, ...]
    snapshot_ms: int


@attrs.frozen
class RecentTrades:
    """Trades of one symbol stamped at or after the asked ``since_ms``, oldest first.

    ``complete`` is false when the source keeps fewer trades than happened since then: the
    oldest ones are missing.
    """

    trades: tuple[Trade, ...]
    complete: bool


class History(Protocol):
    """What a source offers as its ``history`` attribute."""

    #: The channel whose past this answers for (``Trade.channel`` of the source's events).
    channel: str
    #: Interval lengths (ms, months by their nominal length) ``candles`` answers for.
    candle_intervals: Collection[int]
    #: The most candles one ``candles`` call returns.
    max_candles: int

    async def candles(
        self, channel: str, symbol: str, interval_ms: int, start_ms: int, *, limit: int
    ) -> Candles:
        """Up to ``limit`` candles of ``interval_ms`` from the one opening at ``start_ms`` on
        (the newest ``limit`` if more exist)."""
        ...

    async def trades_since(self, channel: str, symbol: str, since_ms: int) -> RecentTrades:
        """The trades of ``symbol`` stamped at or after ``since_ms``, as far as kept."""
        ...


@attrs.frozen
class TradeSummary:
    """Every trade of one symbol stamped in ``[start_ms, until_ms)``, summed, as stored:
    prices and amounts are decimal strings (exact). ``count == 0``: there was none (the
    prices are ``None`` then, the amounts ``"0"``). ``open`` / ``close`` are the earliest
    and latest by trade time (trades of one millisecond: in the order they were stored)."""

    start_ms: int
    until_ms: int
    count: int
    open: str | None
    high: str | None
    low: str | None
    close: str | None
    volume: str
    turnover: str


class StoredHistory(Protocol):
    """What a sink offers as its ``stored_history``: the past of what it stored."""

    async def trades_summaries(
        self, channel: str, symbol: str, ranges: Sequence[tuple[int, int]]
    ) -> list[TradeSummary | None]:
        """For each ``(start_ms, until_ms)`` of ``ranges``, in order: the trades of
        ``symbol`` stamped in it, summed, when the store holds every one of them; ``None``
        when it does not know that it does (it missed part of that time, or never stored
        it). Raises :class:`HistoryError` when the store cannot be read now."""
        ...


class HistoryRouter:
    """``context.history``: the history of a transform's input sources, by channel, and
    the stored history of the sinks that store what those sources produce.

    The core fills it after building the pipeline; a transform reads it once it runs.
    """

    def __init__(self) -> None:
        self._by_channel: dict[str, History] = {}
        #: Names of the input sources that offer history, in the order added.
        self.sources: list[str] = []
        #: Stored histories (:class:`StoredHistory`) of sinks fed by the same sources, in
        #: pipeline order; ``store_names`` holds the sinks' names.
        self.stored: list[StoredHistory] = []
        self.store_names: list[str] = []

    def add_stored(self, sink: str, stored: StoredHistory) -> None:
        """Register ``sink``'s stored history."""
        self.store_names.append(sink)
        self.stored.append(stored)

    def add(self, source: str, history: History) -> None:
        """Register ``source``'s history; the first source of a channel answers for it."""
        self.sources.append(source)
        self._by_channel.setdefault(history.channel, history)

    def for_channel(self, channel: str) -> History | None:
        """The history of the input source that serves ``channel``, or ``None``."""
        return self._by_channel.get(channel)
