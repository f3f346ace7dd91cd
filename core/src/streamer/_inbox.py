"""A sink's bounded queue of batches.

Producers call :meth:`Inbox.put` from their own task; it never switches tasks unless the inbox
is full *and* the sink asked for ``overflow = "block"``. With ``overflow = "drop_oldest"`` a
full inbox discards its oldest batch and counts it, so a slow sink never stalls the source.
The sink side drains everything queued in one :meth:`Inbox.get`.

The inbox also keeps what the runtime needs to account for losses and stalls: how many times
the sink took from it (:attr:`Inbox.takes`, a stalled sink stops taking), the events the sink
took last and has not come back for (:attr:`Inbox.in_flight`), and the events discarded when
a sink is disabled or cut off at shutdown (:meth:`Inbox.discard`, :attr:`Inbox.lost_events`),
and the events of puts cancelled while they waited for room (:attr:`Inbox.cancelled_events`:
the producer, a source stopped at shutdown, had passed them on; the sink never got them).

A trio memory channel cannot drop its oldest item, hence this small deque + ParkingLot.

Positions: every event queued gets the next *position* (:attr:`Inbox.position` is the one
after the newest; dropped events had theirs), and :attr:`Inbox.taken_from` is the position
of the first event the latest ``get`` returned: what a sink needs to place something it
heard of inline among its events (a stream gap: :class:`streamer.NotesGaps`).

Acceptance: a batch is *accepted* once the sink has come back to ``get`` after taking it
(it finished handling it), or it was dropped by ``drop_oldest``, or the inbox is closed.
:meth:`Inbox.mark` and :meth:`Inbox.wait_accepted` let a source that must acknowledge its
input upstream (a JetStream consumer) wait for that; nothing else pays for it.
"""

from __future__ import annotations

from collections import deque

import trio
import trio.lowlevel

from streamer._events import Event
from streamer._overflow import Overflow


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
        self._closed_lot = trio.lowlevel.ParkingLot()
        self._discarding = False
        #: Completed ``get`` calls that returned events; unchanged while the sink is stuck.
        self.takes = 0
        #: Events the last ``get`` returned; the sink is still handling them until it calls
        #: ``get`` again.
        self.in_flight = 0
        #: Events discarded by :meth:`discard` (and put after it), never given to the sink.
        self.lost_events = 0
        #: Events of batches whose put was cancelled while it waited for room, or that a
        #: cancelled producer could not queue without waiting (:meth:`offer`).
        self.cancelled_events = 0
        #: Batches ever queued, and batches accepted (see the module doc).
        self._queued_total = 0
        self._accepted_total = 0
        #: Batches the sink took with its latest ``get``, accepted at its next one.
        self._taken = 0
        self._accepted_changed = trio.lowlevel.ParkingLot()
        #: Events ever returned by ``get`` and the newest of them (the throughput log).
        self.taken_events = 0
        self.newest: Event | None = None
        #: Events ever queued, dropped ones included: the position after the newest.
        self.position = 0
        #: Position of the first event the latest ``get`` returned (the events before it
        #: were taken before, or dropped: ``drop_oldest`` drops the oldest queued).
        self.taken_from = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def discarding(self) -> bool:
        """The sink is gone (:meth:`discard`): what it held is counted already."""
        return self._discarding

    @property
    def queued_batches(self) -> int:
        """Batches ever queued (dropped ones included)."""
        return self._queued_total

    @property
    def queued_events(self) -> int:
        return sum(len(batch) for batch in self._queue)

    async def put(self, batch: list[Event]) -> None:
        """Queue ``batch``; waits only when full under ``overflow = "block"``."""
        if self._closed:
            if self._discarding:
                self.lost_events += len(batch)
            return
        queue = self._queue
        if len(queue) >= self.maxsize:
            if self.overflow == "block":
                try:
                    while len(queue) >= self.maxsize and not self._closed:
                        await self._not_full.park()
                except trio.Cancelled:
                    # Only the cancelled wait pays for this: the producer counted the batch
                    # as passed on, the sink will never see it.
                    self.cancelled_events += len(batch)
                    raise
                if self._closed:
                    if self._discarding:
                        self.lost_events += len(batch)
                    return
            else:
                self.put_nowait(batch)
                return
        queue.append(batch)
        self._queued_total += 1
        self.position += len(batch)
        if self._not_empty:
            self._not_empty.unpark_all()

    def put_nowait(self, batch: list[Event]) -> None:
        """Queue ``batch`` now, discarding the oldest batch if full (whatever the policy)."""
        if self._closed:
            if self._discarding:
                self.lost_events += len(batch)
            return
        queue = self._queue
        dropped_any = False
        while len(queue) >= self.maxsize:
            dropped = queue.popleft()
            self.dropped_batches += 1
            self.dropped_events += len(dropped)
            self._accepted_total += 1
            dropped_any = True
        queue.append(batch)
        self._queued_total += 1
        self.position += len(batch)
        if dropped_any and self._accepted_changed:
            self._accepted_changed.unpark_all()
        if self._not_empty:
            self._not_empty.unpark_all()

    def offer(self, batch: list[Event]) -> None:
        """:meth:`put` without waiting, for a producer already cancelled (it cannot wait):
        queued if there is room (or the policy drops the oldest), else counted in
        :attr:`cancelled_events`."""
        if self.overflow == "block" and len(self._queue) >= self.maxsize and not self._closed:
            self.cancelled_events += len(batch)
            return
        self.put_nowait(batch)

    async def get(self) -> list[Event]:
        """Wait for at least one batch, then return every queued event, oldest first.

        Returns ``[]`` when the inbox is closed and drained: the sink should flush and return.
        Calling it again accepts what the previous call returned.
        """
        self.in_flight = 0
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
        self.takes += 1
        self.in_flight = len(events)
        self.taken_from = self.taken_events + self.dropped_events
        self.taken_events += len(events)
        self.newest = events[-1]
        if self._not_full:
            self._not_full.unpark_all()
        return events

    def close(self) -> None:
        """No more batches will come: wake the sink so it drains and returns."""
        self._closed = True
        self._not_empty.unpark_all()
        self._not_full.unpark_all()
        self._accepted_changed.unpark_all()
        self._closed_lot.unpark_all()

    async def wait_closed(self) -> None:
        """Until :meth:`close`: for a sink waiting on something other than :meth:`get` (room
        in a buffer of its own) that must stop waiting when the pipeline shuts down."""
        while not self._closed:
            await self._closed_lot.park()

    def take_left_over(self, in_hand: int | None = None) -> int:
        """Close and empty the inbox; return how many events it still held, for the caller
        to count: queued, plus those in the sink's hands: ``in_hand`` when the sink counts
        them itself (``streamer.HoldsEvents``), else :attr:`in_flight`."""
        left = self.queued_events + (self.in_flight if in_hand is None else in_hand)
        self._queue.clear()
        self.in_flight = 0
        self.close()
        return left

    def discard(self, in_hand: int | None = None) -> int:
        """The sink is gone: count what is left (:meth:`take_left_over`) and every batch put
        from now on in :attr:`lost_events`. Returns the events lost by this call."""
        lost = self.take_left_over(in_hand)
        self.lost_events += lost
        self._discarding = True
        return lost

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
