"""What gap recovery compares: the trades delivered per symbol and a REST answer's rows.

:class:`TradeWindow` keeps, per symbol, the newest trade time delivered and the ids stamped
then; :func:`coverage` tells how one recent-trade answer covers a gap between a *mark* (the
newest trade delivered before the loss) and the first live trade after the resubscribe.
"""

from __future__ import annotations

from typing import Any

import attrs

from streamer import Trade
from streamer_bybit.decode import check_trade_numbers


class TradeWindow:
    """What gap recovery must know of the trades emitted for one symbol: the newest trade
    time and the ids of the trades stamped exactly then.

    After a reconnect, REST recent-trade rows newer than ``newest_ts`` are new; rows at
    ``newest_ts`` are new unless their id is here. Older trades cannot collide, so nothing
    else is kept: memory per symbol is the trades of one millisecond, not a history.
    Assumes the trades of one message come oldest first (as Bybit sends them).
    """

    __slots__ = ("_ids", "newest_ts")

    def __init__(self) -> None:
        self.newest_ts = -1
        self._ids: set[str] = set()

    def add(self, trades: list[Trade]) -> None:
        """Note ``trades`` (non-empty, one message or one REST recovery, oldest first)."""
        last = trades[-1]
        self.note(last)
        ts = last.ts
        if ts != self.newest_ts:
            return  # recovered trades older than live ones already noted
        ids = self._ids
        i = len(trades) - 2
        while i >= 0 and trades[i].ts == ts:  # only the newest millisecond's trades
            ids.add(trades[i].trade_id)
            i -= 1

    def note(self, trade: Trade) -> None:
        """Note one live trade (a symbol's trades come oldest first)."""
        ts = trade.ts
        if ts > self.newest_ts:
            self.newest_ts = ts
            self._ids = {trade.trade_id}
        elif ts == self.newest_ts:
            self._ids.add(trade.trade_id)

    def ids(self) -> frozenset[str]:
        """The ids of the trades stamped ``newest_ts`` (a snapshot)."""
        return frozenset(self._ids)

    def covers(self, trade: Trade) -> bool:
        """``trade`` is at or before the newest one noted (already delivered)."""
        return trade.ts < self.newest_ts or (
            trade.ts == self.newest_ts and trade.trade_id in self._ids
        )


#: What recovery needs of a symbol's window at the reconnect: (newest_ts, ids stamped then).
RecoveryMark = tuple[int, frozenset[str]]


def trade_from_rest(channel: str, row: Any) -> Trade:
    """A recent-trade row as a :class:`Trade`; ValueError for a row that is not one (a
    field missing or of another JSON type, a price or size that is not a positive number)."""
    if not isinstance(row, dict):
        raise ValueError(f"a recent-trade row is a {type(row).__name__}, not an object")
    names = ("symbol", "side", "price", "size", "execId", "time")
    fields = [f for f in (row.get(k) for k in names) if isinstance(f, str)]
    if len(fields) != len(names):
        raise ValueError("a recent-trade row without symbol, side, price, size, execId and "
                         f"time as strings: {sorted(row)[:10]}")
    symbol, side, price, size, exec_id, time = fields
    check_trade_numbers(exec_id, price, size)
    seq = row.get("seq")
    block, rpi = row.get("isBlockTrade"), row.get("isRPITrade")
    if not (_optional_bool(block) and _optional_bool(rpi) and (
            seq is None or type(seq) in (str, int))):
        raise ValueError(f"recent-trade row {exec_id!r}: isBlockTrade, isRPITrade or seq of "
                         "another JSON type")
    return Trade(channel, symbol, int(time), side, price, size, exec_id, None, block, rpi,
                 int(seq) if seq not in (None, "") else None)


def _optional_bool(value: object) -> bool:
    return value is None or type(value) is bool


@attrs.define
class Coverage:
    """How one REST answer covers a symbol's gap."""

    new: list[Trade]  # rows after the mark and before the first live trade, oldest first
    back: bool  # reaches back to the mark (or is all the history REST has)
    forward: bool  # reaches the first live trade (or the symbol is quiet long enough)
    rows: list[Trade]


def coverage(
    rows: list[Trade], mark: RecoveryMark, first_live: Trade | None, full: bool, quiet_ok: bool
) -> Coverage:
    """``rows`` oldest first; ``full``: as many rows as the request allows."""
    last_ts, seen = mark

    def after_mark(t: Trade) -> bool:
        return t.ts > last_ts or (t.ts == last_ts and t.trade_id not in seen)

    upto = len(rows)
    forward = quiet_ok and first_live is None
    if first_live is not None:
        wanted = first_live.trade_id
        for i, t in enumerate(rows):
            if t.trade_id == wanted:
                upto, forward = i, True
                break
    back = not full or any(not after_mark(t) for t in rows)
    new = [t for t in rows[:upto] if after_mark(t)]
    return Coverage(new, back, forward, rows)
