"""Which time ranges of a symbol's trades the sink stored whole: the ``trade_coverage`` table.

A *segment* is a stretch of one symbol's trade stream that the sink received without a gap;
its row says: every trade of the symbol stamped in ``[from_ts, to_ts)`` is stored. The
:class:`CoverageTracker` follows the sink's events in the order they arrive and puts
:class:`CoverageStep` markers into the writer's queue *behind* the trades they speak for,
so a step is committed in the transaction of those trades or a later one, never before. A
step extends its row only where the row ends exactly where the step begins (the step before
it was committed), so a step lost with its batch breaks the chain and the row stays where
it was.

Rules (the trades of a symbol come in time order between gaps, as an exchange streams them):

- A segment begins 1 ms after the first trade it sees (trades of that very millisecond may
  have come before we listened) and claims up to, not including, its newest trade (more of
  that millisecond may follow).
- A source's stream gap of ``trades`` (heard through :class:`streamer.NotesGaps`, in its place
  among the events) holds the symbols' segments: trades stop extending them. Closed
  ``complete`` (the source recovered what it missed and emitted it before the close), the
  segment takes in everything up to the newest trade seen; closed incomplete, the segment
  ends and the next trade begins a new one. A delisted symbol's segment ends.
- Any loss (rows dropped, refused, a spool file unreadable, the inbox dropping, a restart)
  ends every segment (:meth:`CoverageTracker.lost`), and the writer no longer writes the
  steps already queued for them (:meth:`CoverageTracker.valid`): rows queued after a lost
  one may belong to a segment that claims it.
- Steps spooled by an earlier run are written only if that run ended without a loss (it
  leaves :data:`CLEAN_MARK` in the spool); after a crash its memory buffer is gone
  uncounted, and its spooled steps may claim it.
- At a clean shutdown every segment is closed (``open = false``): a reader does not wait for
  it to grow (:mod:`streamer_postgres.stored`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from streamer import Event, StreamGap, Trade

#: File a run leaves in its spool when it ended without losing anything: the next run may
#: then write the coverage steps of that run's spooled rows.
CLEAN_MARK = "coverage.clean"


class CoverageStep:
    """A marker in the writer's queue: ``segment`` of (channel, symbol) now claims up to
    ``end`` (ms, excluded), from ``start``; ``first``: the segment's row begins here;
    ``ends``: the segment is over (its row is closed)."""

    __slots__ = ("channel", "end", "ends", "first", "segment", "start", "symbol")

    def __init__(self, segment: str, channel: str, symbol: str, start: int, end: int, *,
                 first: bool, ends: bool = False) -> None:
        self.segment = segment
        self.channel = channel
        self.symbol = symbol
        self.start = start
        self.end = end
        self.first = first
        self.ends = ends

    def row(self) -> tuple[object, ...]:
        """The step as a ``coverage`` staging row (``rows.STAGING_COLUMNS``)."""
        return (self.segment, self.channel, self.symbol, self.start, self.end, self.first,
                self.ends)


class _Symbol:
    """One symbol's segment as the tracker follows it."""

    __slots__ = ("claimed", "held", "held_newest", "newest", "segment", "started")

    def __init__(self) -> None:
        self.segment: str | None = None
        #: Claimed so far (ms, excluded): the segment's start until the first step.
        self.claimed = 0
        #: The newest trade time the segment takes in.
        self.newest = 0
        #: Whether the segment's row exists (its first step was queued).
        self.started = False
        #: A stream gap is open: trades do not extend the segment; the newest seen meanwhile.
        self.held = False
        self.held_newest = -1


class CoverageTracker:
    """The segments of one sink (see the module doc). Not thread-safe: the trio side only,
    except :meth:`valid`, which reads two plain values."""

    def __init__(self, run_id: str | None = None) -> None:
        #: This writer's id: its segments are ``<run>.<n>``.
        self.run = run_id or uuid.uuid4().hex
        self._next = 0
        self._symbols: dict[tuple[str, str], _Symbol] = {}
        #: Segments numbered below it were ended by a loss: their queued steps are not written.
        self._floor = 0
        #: Whether steps of another run's segments (found in the spool) are written.
        self.foreign_ok = False
        #: Nothing was lost so far (see :meth:`lost`).
        self.clean = True

    def __len__(self) -> int:
        return len(self._symbols)

    def trades(self, events: Iterable[Event]) -> list[CoverageStep]:
        """Follow ``events`` (in arrival order); the steps to queue behind them."""
        touched: dict[tuple[str, str], _Symbol] = {}
        symbols = self._symbols
        for e in events:
            if not isinstance(e, Trade):
                continue
            key = (e.channel, e.symbol)
            st = symbols.get(key)
            if st is None:
                st = symbols[key] = _Symbol()
            ts = e.ts
            if st.held:
                if ts > st.held_newest:
                    st.held_newest = ts
                continue
            if st.segment is None:
                st.segment = f"{self.run}.{self._next}"
                self._next += 1
                st.claimed = ts + 1
                st.newest = ts
                st.started = False
            elif ts > st.newest:
                st.newest = ts
            touched[key] = st
        return [step for key, st in touched.items()
                if (step := self._step(key, st)) is not None]

    def _step(self, key: tuple[str, str], st: _Symbol, *, ends: bool = False
              ) -> CoverageStep | None:
        if st.segment is None:
            return None
        if st.newest <= st.claimed and not (ends and st.started):
            return None
        end = max(st.newest, st.claimed)
        step = CoverageStep(st.segment, key[0], key[1], st.claimed, end, first=not st.started,
                            ends=ends)
        st.claimed = end
        st.started = True
        return step

    def gap(self, gap: StreamGap) -> list[CoverageStep]:
        """A source's stream gap, in its place among the events; the steps to queue now."""
        if gap.data_type != "trades":
            return []
        out: list[CoverageStep] = []
        for symbol in gap.symbols:
            key = (gap.channel, symbol)
            st = self._symbols.get(key)
            if gap.ended:  # delisted: nothing more comes; close its segment and forget it
                if st is not None:
                    step = self._step(key, st, ends=True)
                    if step is not None:
                        out.append(step)
                    del self._symbols[key]
                continue
            if st is None:
                st = self._symbols[key] = _Symbol()
            if not gap.closed:
                if not st.held:
                    st.held = True
                    st.held_newest = st.newest
                continue
            st.held = False
            if gap.complete:
                st.newest = max(st.newest, st.held_newest)
                step = self._step(key, st)
            else:
                step = self._step(key, st, ends=True)
                st.segment = None
            if step is not None:
                out.append(step)
        return out

    def lost(self) -> None:
        """Events were lost: every segment ends here, and their queued steps are void."""
        for st in self._symbols.values():
            st.segment = None
        self._floor = self._next
        self.foreign_ok = False
        self.clean = False

    def finish(self) -> list[CoverageStep]:
        """The sink stops cleanly: close every segment (the steps to queue last)."""
        out = []
        for key, st in self._symbols.items():
            step = self._step(key, st, ends=True)
            if step is not None:
                out.append(step)
            st.segment = None
        return out

    def valid(self, segment: str) -> bool:
        """Whether a queued step of ``segment`` may still be written."""
        run, _, number = segment.rpartition(".")
        if run == self.run:
            return int(number) >= self._floor
        return self.foreign_ok


def count_events(items: Iterable[object]) -> int:
    """The events among the writer's queue ``items`` (the rest are coverage steps)."""
    return sum(1 for item in items if item.__class__ is not CoverageStep)
