"""Stream gaps in their place among the sink's events.

The core tells the sink of a source's stream gap inline (:class:`streamer.NotesGaps`), when
the events the source emitted before it may still wait in the sink's inbox; ``position``
says where it falls (:attr:`streamer.Inbox.position`). :class:`GapNotes` keeps the gaps not
reached yet and cuts each batch the sink takes at them, so the coverage tracker sees every
event and gap in the order the source produced them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from streamer import Event, StreamGap

#: Gaps waiting for their place, at most; past it the oldest is dropped and the caller told
#: (a loss of coverage, not of data: every segment then ends).
MAX_WAITING = 10_000


class GapNotes:
    def __init__(self) -> None:
        self._waiting: deque[tuple[int, StreamGap]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, gap: StreamGap, position: int) -> bool:
        """Keep ``gap`` until the events before ``position`` are taken; False when the
        oldest waiting gap had to be dropped to make room."""
        fits = len(self._waiting) < MAX_WAITING
        if not fits:
            self._waiting.popleft()
        self._waiting.append((position, gap))
        return fits

    def place(self, events: list[Event], start: int) -> Iterator[list[Event] | StreamGap]:
        """``events`` (a ``get``'s, the first at position ``start``) cut at the waiting gaps
        they reach: runs of events and gaps, in order."""
        waiting = self._waiting
        end = start + len(events)
        done = 0
        while waiting and waiting[0][0] <= end:
            position, gap = waiting.popleft()
            cut = min(max(position - start, done), len(events))
            if cut > done:
                yield events[done:cut]
                done = cut
            yield gap
        if done < len(events):
            yield events[done:] if done else events
