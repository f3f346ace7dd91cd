"""Prototype (bench only): a gap-recovery trade window that keeps only the newest millisecond.

``streamer_bybit.connection.TradeWindow`` keeps the last ~1,000 trades of every linear
symbol (60 spot) so that, after a reconnect, REST recent-trade rows can be told apart from
trades already emitted. Only two kinds of ids can actually collide with REST rows that pass
the ``ts >= last_ts`` filter: trades stamped exactly ``last_ts`` (the newest millisecond
seen before the drop) and live trades read since the reconnect (held in
``BybitConnection._held`` until recovery ends). So the window can keep the ids of the newest
millisecond only: one comparison per message instead of a deque append and trim, and a few
ids per symbol instead of ~1,000 Trade objects (~680 B each).

The bench swaps it in with ``--proto-window lastms`` (same attributes as TradeWindow:
``add``, ``ids``, ``count``, ``newest_ts``) to measure CPU and RSS. For the real change the
recovery must add the held trades' ids to ``known`` and test ``ts <= last_ts`` instead of
``trade_id in known`` in ``reached_back`` (see docs/performance.md).
"""

from __future__ import annotations

from streamer.events import Trade


class LastMsWindow:
    __slots__ = ("_ids", "count", "limit", "newest_ts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.newest_ts = 0
        self._ids: list[str] = []

    def add(self, trades: list[Trade]) -> None:
        self.count += len(trades)
        last = trades[-1].ts
        if last > self.newest_ts:
            self.newest_ts = last
            if len(trades) == 1:
                self._ids = [trades[0].trade_id]
            else:
                self._ids = [t.trade_id for t in trades if t.ts == last]
        elif last == self.newest_ts:
            self._ids.extend(t.trade_id for t in trades if t.ts == last)

    def ids(self) -> set[str]:
        return set(self._ids)


def install() -> None:
    import streamer_bybit.connection as connection

    connection.TradeWindow = LastMsWindow
