"""Stream gaps: while a source recovers trades it may have missed, the candles they would
fall in stay open (:class:`GapHolds`), so recovered trades count instead of being late."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streamer import Metrics
from streamer_aggregate.candles import SymbolCandles


class GapHolds:
    """The gaps being recovered, per (channel, symbol), over the aggregator's candles."""

    def __init__(
        self, by_channel: dict[str, dict[str, SymbolCandles]], metrics: Metrics,
        log: logging.Logger,
    ) -> None:
        self._by_channel = by_channel
        self.metrics = metrics
        self.log = log
        #: (channel, symbol) -> (since_ms, deadline_ms) of a stream gap being recovered.
        self._holds: dict[tuple[str, str], tuple[int, int]] = {}

    def __bool__(self) -> bool:
        return bool(self._holds)

    def since(self, channel: str, symbol: str) -> int | None:
        """Since when (ms) the stream of ``symbol`` is held, or ``None``."""
        hold = self._holds.get((channel, symbol))
        return None if hold is None else hold[0]

    def hold(self, channel: str, symbols: Iterable[str], since_ms: int, deadline_ms: int) -> None:
        """The source lost its stream of ``symbols`` after ``since_ms``: keep their candles
        that end after ``since_ms`` open until :meth:`release` (trades it recovers from REST
        then still count instead of being late), or until ``deadline_ms``."""
        holds = self._holds
        by_symbol = self._by_channel.get(channel, {})
        for symbol in symbols:
            key = (channel, symbol)
            previous = holds.get(key)
            if previous is not None:
                since_ms, deadline_ms = min(since_ms, previous[0]), max(deadline_ms, previous[1])
            holds[key] = (since_ms, deadline_ms)
            group = by_symbol.get(symbol)
            for st in group.states if group is not None else ():
                st.held = since_ms
        self.metrics.inc("gap_holds")

    def release(self, channel: str, symbols: Iterable[str], complete: bool) -> None:
        """The gap is over. If not ``complete`` (trades may be missing for good), the candles
        it overlapped are flagged ``partial``."""
        by_symbol = self._by_channel.get(channel, {})
        for symbol in symbols:
            hold = self._holds.pop((channel, symbol), None)
            if hold is None:
                continue
            group = by_symbol.get(symbol)
            for st in group.states if group is not None else ():
                st.held = None
                if not complete:
                    for b in st.buckets:
                        if b.end > hold[0] and not b.partial:
                            b.partial = True
                            self.metrics.inc("gap_partial_klines")

    def next_deadline(self) -> int | None:
        """When the earliest hold gives up waiting (ms), or ``None`` without holds."""
        return min((d for _, d in self._holds.values()), default=None)

    def expire(self, now_ms: int) -> None:
        """Release, as incomplete, the holds whose deadline is ``now_ms`` or earlier."""
        expired = [key for key, (_, deadline) in self._holds.items() if deadline <= now_ms]
        for channel, symbol in expired:
            since = self._holds[(channel, symbol)][0]
            self.metrics.inc("gap_hold_expired")
            self.log.warning(
                "%s %s: the source did not recover its gap since %d in time; closing the "
                "candles it overlapped flagged partial", channel, symbol, since)
            self.release(channel, (symbol,), complete=False)
