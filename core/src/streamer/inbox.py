"""A sink's bounded queue of batches.

Producers call :meth:`Inbox.put` from their own task; it never switches tasks unless the inbox
is full *and* the sink asked for ``overflow = "block"``. With ``overflow = "drop_oldest"`` a
full inbox discards its oldest batch and counts it, so a slow sink never stalls the source.
The sink side drains everything queued in one :meth:`Inbox.get` (../shared/DESIGN.md, 1).

A trio memory channel cannot drop its oldest item, hence this small deque + ParkingLot.
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
        queue.append(batch)
        if self._not_empty:
            self._not_empty.unpark_all()

    async def get(self) -> list[Event]:
        """Wait for at least one batch, then return every queued event, oldest first.

        Returns ``[]`` when the inbox is closed and drained: the sink should flush and return.
        """
        queue = self._queue
        while not queue:
            if self._closed:
                return []
            await self._not_empty.park()
        if len(queue) == 1:
            events = queue.popleft()
        else:
            events = []
            for batch in queue:
                events.extend(batch)
            queue.clear()
        if self._not_full:
            self._not_full.unpark_all()
        return events

    def close(self) -> None:
        """No more batches will come: wake the sink so it drains and returns."""
        self._closed = True
        self._not_empty.unpark_all()
        self._not_full.unpark_all()
