"""The hold book: which live trades go downstream now, which wait, which are dropped.

After a reconnect, gap recovery fetches the trades missed meanwhile from REST; until a symbol
is recovered its live trades must wait, so that they come out after the recovered ones. The
rules, in one synchronous class with no I/O (the live source's
:class:`~streamer_bybit.outlet.Outlet` runs it, and a replay's
:class:`~streamer_bybit.replay.RecoveryMirror` runs the same rules on recorded data):

- **hold** (:meth:`HoldBook.hold`): the live trades of the symbols being recovered are held
  back; every other event (tickers, klines, other symbols' trades) passes at once.
- **release in order** (:meth:`HoldBook.settle`): when a symbol's recovery settles, its
  recovered trades go, then its held live trades; from then on it passes directly.
- **dedupe** : a symbol with no live trade before it settled (quiet) cannot have its REST rows
  checked against the live stream; live trades its recovered trades already cover are dropped
  (``duplicate_trades``) until the first one they do not cover.
- **overflow** : past ``max_held`` held trades in all, :attr:`HoldBook.over` is set and
  :meth:`HoldBook.release_held` lets every held trade go at once
  (``recovery_hold_overflows``); the recovered trades then follow when they settle
  (``late_recovered_trades``), out of order.
- **session lost** (:meth:`HoldBook.end_session`): held trades are dropped (REST has them,
  the next session recovers them); a symbol released early cannot be recovered exactly any
  more and is handed back for a gap report.
- **stop** (:meth:`HoldBook.release_all`): every held trade goes, noted as delivered.

With ``track_delivered`` it also notes, per symbol, the newest trade it let out
(:attr:`HoldBook.delivered`, a :class:`~streamer_bybit.coverage.TradeWindow`): the mark
that the next recovery starts from. Only what leaves the book is noted, so the mark is
exactly what went downstream.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamer import Event, Metrics, Trade
from streamer_bybit.coverage import TradeWindow


class HeldSymbol:
    """One symbol being recovered."""

    __slots__ = ("first_live", "holding", "trades")

    def __init__(self) -> None:
        #: The first live trade read since the resubscribe (None: none yet, a quiet symbol).
        self.first_live: Trade | None = None
        #: Its live trades held back, oldest first.
        self.trades: list[Trade] = []
        #: False once the overflow let its held trades go before it settled.
        self.holding = True


class HoldBook:
    """Holds, releases and drops live trades while gap recovery runs; see the module doc."""

    def __init__(self, metrics: Metrics, max_held: int, *, track_delivered: bool = True) -> None:
        self.metrics = metrics
        #: Live trades held in all, at most (one read more before the overflow releases).
        self.max_held = max_held
        #: Per symbol, the newest trade let out (empty without ``track_delivered``).
        self.delivered: dict[str, TradeWindow] = {}
        self._track = track_delivered
        self.held: dict[str, HeldSymbol] = {}
        #: After a quiet symbol settled: what it recovered (live trades covered are dropped).
        self.dedupe: dict[str, TradeWindow] = {}
        self.held_count = 0
        #: More than ``max_held`` trades are held: the caller lets them go (release_held).
        self.over = False

    @property
    def idle(self) -> bool:
        """Nothing held and nothing to dedupe: live events pass as they are."""
        return not self.held and not self.dedupe

    def hold(self, symbols: Iterable[str]) -> None:
        """Hold the live trades of ``symbols`` from now on (those held already stay so)."""
        for symbol in symbols:
            if symbol not in self.held:
                self.held[symbol] = HeldSymbol()

    # ------------------------------------------------------------------ the hot path
    def live(self, events: list[Event]) -> list[Event]:
        """The events of one read that go downstream now (``events`` itself when the book is
        idle), in their order; held trades are kept, covered duplicates dropped."""
        held, dedupe = self.held, self.dedupe
        if not held and not dedupe:
            if self._track:
                self._note_each(events)
            return events
        track = self._track
        delivered = self.delivered
        out: list[Event] = []
        n = 0
        for e in events:
            if e.__class__ is Trade:
                h = held.get(e.symbol)
                if h is not None:
                    if h.first_live is None:
                        h.first_live = e
                    if h.holding:
                        h.trades.append(e)
                        n += 1
                        continue
                elif dedupe:
                    window = dedupe.get(e.symbol)
                    if window is not None:
                        if window.covers(e):
                            self.metrics.inc("duplicate_trades")
                            continue
                        del dedupe[e.symbol]
                if track:
                    w = delivered.get(e.symbol)
                    if w is None:
                        w = delivered[e.symbol] = TradeWindow()
                    w.note(e)
            out.append(e)
        if n:
            self.held_count += n
            if self.held_count > self.max_held:
                self.over = True
        return out

    def _note_each(self, events: list[Event]) -> None:
        delivered = self.delivered
        for e in events:
            if e.__class__ is Trade:
                window = delivered.get(e.symbol)
                if window is None:
                    window = delivered[e.symbol] = TradeWindow()
                window.note(e)

    def _note(self, symbol: str, trades: list[Trade]) -> None:
        if self._track and trades:
            window = self.delivered.get(symbol)
            if window is None:
                window = self.delivered[symbol] = TradeWindow()
            window.add(trades)

    # ------------------------------------------------------------------ releasing
    def release_held(self) -> list[Event]:
        """Over ``max_held``: stop holding; every held trade goes now, oldest symbol first."""
        self.over = False
        out: list[Event] = []
        for symbol, h in self.held.items():
            if h.holding:
                h.holding = False
                if h.trades:
                    self._note(symbol, h.trades)
                    out.extend(h.trades)
                    h.trades = []
        self.held_count = 0
        self.metrics.inc("recovery_hold_overflows")
        return out

    def settle(self, symbol: str, recovered: list[Trade], *, quiet: bool,
               more: bool = False) -> list[Event]:
        """``symbol``'s recovery settled with ``recovered`` (oldest first, maybe none): what
        goes now, the recovered trades then the held ones. ``quiet``: it had no live trade
        (the live trades ``recovered`` covers will be dropped). ``more``: another part of the
        same recovery follows (a capture splits one into records); the held trades go with
        the last part."""
        out: list[Event] = list(recovered)
        h = self.held.get(symbol)
        if recovered:
            self._note(symbol, recovered)
            if quiet:
                window = self.dedupe.get(symbol)
                if window is None:
                    window = self.dedupe[symbol] = TradeWindow()
                window.add(recovered)
            if h is not None and not h.holding:
                self.metrics.inc("late_recovered_trades", len(recovered))
        if not more and h is not None:
            del self.held[symbol]
            if h.holding and h.trades:
                self._note(symbol, h.trades)
                out.extend(h.trades)
                self.held_count -= len(h.trades)
        return out

    def release_all(self) -> list[Event]:
        """Stopping: every held trade goes now (noted as delivered); nothing is held after."""
        out: list[Event] = []
        for symbol, h in self.held.items():
            if h.trades:
                self._note(symbol, h.trades)
                out.extend(h.trades)
        self.held.clear()
        self.held_count = 0
        self.over = False
        return out

    def end_session(self) -> dict[str, HeldSymbol]:
        """The session ended before every symbol settled. A symbol still holding drops its
        held trades (the next session recovers them from REST) and stays held; one whose
        trades were released early is taken out and returned: its gap cannot be recovered
        exactly any more."""
        lost: dict[str, HeldSymbol] = {}
        for symbol, h in list(self.held.items()):
            if h.holding:
                h.trades = []
                h.first_live = None
            else:
                lost[symbol] = self.held.pop(symbol)
        self.dedupe.clear()
        self.held_count = 0
        self.over = False
        return lost


__all__ = ["HeldSymbol", "HoldBook"]
