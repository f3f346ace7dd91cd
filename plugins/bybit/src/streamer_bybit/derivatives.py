"""``streams = ["derivatives"]`` (linear, inverse): from the merged ticker state of each
symbol, a :class:`streamer.Derivatives` event whenever its funding rate, next funding time,
open interest (or its value), mark or index price changes, and a :class:`streamer.Funding`
event at each funding time, with the rate that applied.

Bybit's ``fundingRate`` is the rate of the coming settlement at ``nextFundingTime``; when
``nextFundingTime`` moves on, that settlement happened: the Funding event carries the time
passed and the last rate seen before it moved. Across a reconnect the last state is kept
(the snapshot after the resubscribe emits only what changed; a settlement missed meanwhile
still comes out, with the last rate seen before the loss).
"""

from __future__ import annotations

from typing import Any, Final

from streamer import Derivatives, Event, Funding

#: Bybit's ticker fields that make up the derivatives state, in the event's order.
FIELDS: Final = ("fundingRate", "nextFundingTime", "openInterest", "openInterestValue",
                 "markPrice", "indexPrice")

State = tuple[Any, ...]


def _number(value: Any) -> float | None:
    return value if type(value) is float else None


class DerivativesTracker:
    """The last derivatives state per symbol of one source's channel."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.last: dict[str, State] = {}

    def update(self, symbol: str, fields: dict[str, Any], ts: int, out: list[Event]) -> None:
        """After a ticker message merged into ``fields``: the events of what changed."""
        state = tuple(_number(fields.get(name)) for name in FIELDS)
        before = self.last.get(symbol)
        if state == before:
            return
        self.last[symbol] = state
        rate, next_time = state[0], state[1]
        if before is not None:
            old_rate, old_time = before[0], before[1]
            if (old_time is not None and old_rate is not None and next_time is not None
                    and next_time > old_time > 0):
                out.append(Funding(self.channel, symbol, int(old_time), old_rate))
        out.append(Derivatives(self.channel, symbol, ts, rate,
                               int(next_time) if next_time is not None else None,
                               state[2], state[3], state[4], state[5]))


__all__ = ["FIELDS", "DerivativesTracker"]
