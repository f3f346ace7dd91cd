"""A sink's bounded queue of batches.

Producers call :meth:`Inbox.put` from their own task; it never switches tasks unless the inbox
is full *and* the sink asked for ``overflow = "block"``. With ``overflow = "drop_oldest"`` a
full inbox discards its oldest batch and counts it, so a slow sink never stalls the source.
The sink side drains everything queued in one :meth:`Inbox.get` (../shared/DESIGN.md, 1).

A trio memory channel cannot drop its oldest item, hence this small deque + ParkingLot.

Acceptance: a batch is *accepted* once the sink has come back to ``get`` after taking it
(it finished handling it), or it was dropped by ``drop_oldest``, or the inbox is closed.
:meth:`Inbox.mark` and :meth:`Inbox.wait_accepted` let a source that must acknowledge its
input upstream (a JetStream consumer) wait for that; nothing else pays for it.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import trio
import trio.lowlevel

from streamer.events import Event

Overflow = Literal["block", "drop_oldest"]


class Inbox:
    """Bounded FIFO of batches between the pipeline and one sink."""

    def __init__(self, name: str, maxsize: int = 1000, overflow: Overflow = "block") -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.name = name
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        #: Batches discarded because the inbox was full (``drop_oldest``).
        self.dropped_batches = 0
        #: Events in those batches.
        self.dropped_events = 0
        self._queue: deque[list[Event]] = deque()
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()
        self._closed = False
        #: Batches ever queued, and batches accepted (see the module doc).
        self._queued_total = 0
        self._accepted_total = 0
        #: Batches the sink took with its latest ``get``, accepted at its next one.
        self._taken = 0
        self._accepted_changed = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, batch: list[Event]) -> None:
        """Queue ``batch``; waits only when full under ``overflow = "block"``."""
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= self.maxsize:
            if self.overflow == "block":
                while len(queue) >= self.maxsize and not self._closed:
                    await self._not_full.park()
                if self._closed:
                    return
            else:
                self.put_nowait(batch)
                return
        queue.append(batch)
        self._queued_total += 1
        if self._not_empty:
            self._not_empty.unpark_all()

    def put_nowait(self, batch: list[Event]) -> None:
        """Queue ``batch`` now, discarding the oldest batch if full (whatever the policy)."""
        if self._closed:
            return
        queue = self._queue
        while len(queue) >= self.maxsize:
            dropped = queue.popleft()
            self.dropped_batches += 1
            self.dropped_events += len(dropped)
            self._accepted_total += 1
        queue.append(batch)
        self._queued_total += 1
        if self._accepted_changed:
            self._accepted_changed.unpark_all()
        if self._not_empty:
            self._not_empty.unpark_all()

    async def get(self) -> list[Event]:
        """Wait for at least one batch, then return every queued event, oldest first.

        Returns ``[]`` when the inbox is closed and drained: the sink should flush and return.
        Calling it again accepts what the previous call returned.
        """
        if self._taken:
            self._accept_taken()
        queue = self._queue
        while not queue:
            if self._closed:
                return []
            await self._not_empty.park()
        n_batches = len(queue)
        if n_batches == 1:
            events = queue.popleft()
        else:
            events = []
            for batch in queue:
                events.extend(batch)
            queue.clear()
        self._taken = n_batches
        if self._not_full:
            self._not_full.unpark_all()
        return events

    def get_nowait(self) -> list[Event]:
        """Every queued event, oldest first; ``[]`` if none."""
        if self._taken:
            self._accept_taken()
        if not self._queue:
            return []
        events: list[Event] = []
        for batch in self._queue:
            events.extend(batch)
        self._taken = len(self._queue)
        self._queue.clear()
        if self._not_full:
            self._not_full.unpark_all()
        return events

    def close(self) -> None:
        """No more batches will come: wake the sink so it drains and returns."""
        self._closed = True
        self._not_empty.unpark_all()
        self._not_full.unpark_all()
        self._accepted_changed.unpark_all()

    # -- acceptance --------------------------------------------------------------------------

    def _accept_taken(self) -> None:
        self._accepted_total += self._taken
        self._taken = 0
        if self._accepted_changed:
            self._accepted_changed.unpark_all()

    def mark(self) -> int:
        """A position: :meth:`wait_accepted` on it returns once every batch queued so far
        is accepted."""
        return self._queued_total

    async def wait_accepted(self, mark: int) -> None:
        """Wait until the batches queued before ``mark`` are accepted (or the inbox closes)."""
        while self._accepted_total < mark and not self._closed:
            await self._accepted_changed.park()
