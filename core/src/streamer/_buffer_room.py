"""Back-pressure for a sink that moves its inbox into a bounded buffer of its own.

Such a sink (Redis, NATS) takes every batch out of its inbox at once and a writer task of its
own empties the buffer; so its inbox never fills and never blocks, whatever its ``overflow``.
Behind a live source that is what it must do: it drops the oldest events of its buffer when
the buffer is full rather than hold up the source. Behind sources that read stored data
(:attr:`streamer.Context.live_input` False) dropping only loses what waiting would deliver, so
the sink waits with :meth:`BufferRoom.wait` before it adds a batch: its inbox fills, blocks
(see :mod:`streamer._liveness`), and the source waits.

While the sink waits (:attr:`BufferRoom.waiting`) its writer must write what it holds at once,
not at the end of a flush window: a source that drives trio's clock (``bybit.replay``) holds
time still while it waits, so a window that ends later never ends.

The wait ends when the inbox is closed (the pipeline shuts down): the sink then adds what it
took past its bound, so that its shutdown deadline decides what is written and what is
counted lost (``lost_at_shutdown``); a cancelled wait leaves the batch in the sink's hands,
counted by the core like any batch a sink took and did not finish.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.lowlevel

from streamer._inbox import Inbox


class BufferRoom:
    """Room for ``capacity`` events in a sink's buffer: the sink waits for it, the writer
    that empties the buffer reports it (:meth:`freed`)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        #: The sink waits for room: its writer writes now, whatever its flush window.
        self.waiting = False
        self._freed = trio.lowlevel.ParkingLot()

    def freed(self) -> None:
        """The writer removed events from the buffer (written, or dropped and counted)."""
        if self._freed:
            self._freed.unpark_all()

    def lacks_room(self, inbox: Inbox, held: int, incoming: int) -> bool:
        """Whether :meth:`wait` would wait: ``incoming`` events do not fit beside ``held``
        ones (an empty buffer takes any batch whole, so one take larger than ``capacity``
        cannot wait forever) and ``inbox`` is open."""
        return held > 0 and held + incoming > self.capacity and not inbox.closed

    async def wait(self, inbox: Inbox, held: Callable[[], int], incoming: int,
                   wake_writer: Callable[[], None]) -> None:
        """Until ``incoming`` more events fit beside the ``held()`` ones, or ``inbox`` is
        closed; ``wake_writer()`` first, so that it sees :attr:`waiting`. Returns at once
        when there is room (no checkpoint)."""
        if not self.lacks_room(inbox, held(), incoming):
            return
        self.waiting = True
        wake_writer()
        try:
            async with trio.open_nursery() as race:
                race.start_soon(_cancel_when_closed, inbox, race.cancel_scope)
                while self.lacks_room(inbox, held(), incoming):
                    await self._freed.park()
                race.cancel_scope.cancel()
        finally:
            self.waiting = False


async def _cancel_when_closed(inbox: Inbox, scope: trio.CancelScope) -> None:
    await inbox.wait_closed()
    scope.cancel()
