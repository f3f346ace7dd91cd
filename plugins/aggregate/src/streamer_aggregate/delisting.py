"""Symbols whose stream ended (a source's :class:`streamer.StreamGap` with ``ended=True``:
delisted, no longer trading): their open candles are closed now, as they stand, and
everything the aggregator kept of them is forgotten (no flat candles follow, no memory
grows with the symbols a market ever listed). Counted ``symbols_ended``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from streamer import Kline

if TYPE_CHECKING:
    from streamer_aggregate.aggregator import KlineAggregator


def end_symbols(agg: KlineAggregator, channel: str, symbols: Iterable[str]) -> list[Kline]:
    """Close the open candles of ``symbols`` of ``channel`` and forget them."""
    groups = agg._by_channel.get(channel)
    out: list[Kline] = []
    if not groups:
        return out
    for symbol in symbols:
        if symbol not in groups:
            continue
        agg.holds.release(channel, (symbol,), True)
        group = groups.pop(symbol)
        for st in group.states:
            for bucket in st.buckets:
                agg._emit_closed(bucket, out)
            st.buckets.clear()
            st.cur = None
            agg._all.remove(st)
        agg.metrics.inc("symbols_ended")
    agg._dirty = [b for b in agg._dirty if not b.closed]
    return out


__all__ = ["end_symbols"]
