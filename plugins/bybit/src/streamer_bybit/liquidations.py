"""Bybit's ``allLiquidation.<SYMBOL>`` topic (linear, inverse): every liquidation of a symbol,
pushed every 500 ms, as :class:`streamer.Liquidation` events.

Liquidations carry no id, and a resubscribe may push again what was pushed before the loss:
each connection remembers the keys ``(T, s, S, v, p)`` of the last :data:`KEYS_MAX`
liquidations it emitted and drops a repeat (``duplicate_liquidations``). A lost connection
is reported downstream as a :class:`streamer.StreamGap` of data type ``"liquidations"``:
opened when the connection is lost, closed ``complete=False`` once it is subscribed again
(Bybit has no REST history of liquidations to recover them from).
"""

from __future__ import annotations

from typing import Final

import msgspec

from streamer import Event, Liquidation, Metrics, StreamGap
from streamer.clock import now_ms

#: Keys remembered per connection against repeats. Bybit pushes every 500 ms; what a
#: resubscribe repeats is far less than this, and the memory stays bounded (~1 MB).
KEYS_MAX: Final = 4096

Key = tuple[int, str, str, str, str]


class LiquidationItem(msgspec.Struct, gc=False):
    T: int
    s: str
    S: str
    v: str
    p: str


liquidations_decoder: Final = msgspec.json.Decoder(list[LiquidationItem])


class LiquidationFeed:
    """One connection's liquidations: decode, drop repeats, report gaps."""

    def __init__(self, channel: str, symbols: tuple[str, ...], metrics: Metrics) -> None:
        self.channel = channel
        self.symbols = symbols
        self.metrics = metrics
        self._seen: dict[Key, None] = {}  # insertion-ordered: the oldest go first
        self._newest_ts: int | None = None
        self._gap_since: int | None = None
        #: Liquidations emitted (read by the metrics).
        self.emitted = 0

    def add(self, raw: msgspec.Raw, out: list[Event]) -> None:
        """Append one message's new liquidations to ``out``; raises on a malformed one
        (the decoder takes back what the message added and counts it)."""
        items = liquidations_decoder.decode(raw)
        seen = self._seen
        channel = self.channel
        fresh: dict[Key, None] = {}
        for item in items:
            key = (item.T, item.s, item.S, item.v, item.p)
            if key in seen or key in fresh:
                self.metrics.inc("duplicate_liquidations")
                continue
            fresh[key] = None
            out.append(Liquidation(channel, item.s, item.T, item.S, item.v, item.p))
        # Noted only once the whole message decoded (a raise above leaves no trace).
        for key in fresh:
            seen[key] = None
            if self._newest_ts is None or key[0] > self._newest_ts:
                self._newest_ts = key[0]
        while len(seen) > KEYS_MAX:
            del seen[next(iter(seen))]
        self.emitted += len(fresh)

    def forget(self, symbols: set[str]) -> None:
        """``symbols`` are no longer streamed (delisted): their repeat keys go too."""
        seen = self._seen
        for key in [k for k in seen if k[1] in symbols]:
            del seen[key]

    def open_gap(self) -> StreamGap | None:
        """The connection was lost: the gap to report (None when one is open already)."""
        if self._gap_since is not None or not self.symbols:
            return None
        self._gap_since = self._newest_ts if self._newest_ts is not None else now_ms()
        return StreamGap(self.channel, self.symbols, self._gap_since,
                         data_type="liquidations")

    def close_gap(self) -> StreamGap | None:
        """Subscribed again: the gap's end (what it held cannot be known: not complete)."""
        if self._gap_since is None:
            return None
        since, self._gap_since = self._gap_since, None
        return StreamGap(self.channel, self.symbols, since, closed=True, complete=False,
                         data_type="liquidations")


__all__ = ["KEYS_MAX", "LiquidationFeed", "LiquidationItem"]
