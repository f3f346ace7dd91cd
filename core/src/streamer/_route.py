"""Routing: the ``emit`` of one producer (a source or a transform's ``run``).

``await emit(batch)`` runs each downstream transform's ``process`` and queues the batch into
each downstream sink's :class:`~streamer.Inbox`, on the emitting task, so a batch travels from
the socket read to every sink queue without a task switch. Sources' batches first go through
the ``streamer_transform_event`` hooks (:func:`hook_applier`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import streamer
from streamer._api import Emit, HandlesGaps, StreamGap
from streamer._events import Event
from streamer._inbox import Inbox

if TYPE_CHECKING:
    from streamer._node import Node


class Route:
    """The ``emit`` of one producer: its downstream transforms (run inline) and sink inboxes."""

    __slots__ = ("_apply_hooks", "_inboxes", "_transforms", "batches", "events", "newest")

    def __init__(
        self,
        transforms: list[tuple[Node, Emit]],
        inboxes: list[Inbox],
        apply_hooks: Callable[[list[Event]], list[Event]] | None,
    ) -> None:
        self._transforms = transforms
        self._inboxes = inboxes
        self._apply_hooks = apply_hooks
        #: Batches emitted, events passed on and the newest of them (:mod:`streamer._stats`).
        self.batches = 0
        self.events = 0
        self.newest: Event | None = None

    async def __call__(self, batch: list[Event]) -> None:
        self.batches += 1
        if self._apply_hooks is not None:
            batch = self._apply_hooks(batch)
            if not batch:
                return
        self.events += len(batch)
        self.newest = batch[-1]
        # Sinks first: a sink fed by both sees a trade before the kline it produced.
        for inbox in self._inboxes:
            await inbox.put(batch)
        for tnode, temit in self._transforms:
            try:
                out = tnode.obj.process(batch)
            except Exception as exc:  # one bad transform must not stop a source
                _transform_failed(tnode, "a batch", exc)
                continue
            if out:
                await temit(out)

    def _reachable_inboxes(self) -> list[Inbox]:
        inboxes = list(self._inboxes)
        for _, temit in self._transforms:
            if isinstance(temit, Route):
                inboxes.extend(i for i in temit._reachable_inboxes() if i not in inboxes)
        return inboxes

    async def accepted(self) -> None:
        """Wait until every sink fed by this producer, directly or through inline transforms,
        has accepted everything queued so far (:meth:`Inbox.wait_accepted`)."""
        for inbox in self._reachable_inboxes():
            await inbox.wait_accepted(inbox.mark())

    async def gap(self, gap: StreamGap) -> None:
        for tnode, temit in self._transforms:
            on_gap = tnode.obj.on_gap if isinstance(tnode.obj, HandlesGaps) else None
            if on_gap is None:
                continue
            try:
                out = on_gap(gap)
            except Exception as exc:  # nor a bad gap handler
                _transform_failed(tnode, "a stream gap", exc)
                continue
            if out:
                await temit(out)


def _transform_failed(node: Node, what: str, exc: Exception) -> None:
    node.context.metrics.inc("errors")
    node.context.logger.error("transform %r failed on %s: %s: %s", node.name, what,
                              type(exc).__name__, exc, exc_info=exc)


def hook_applier(
    source: str, hooks: list[Callable[..., Any]]
) -> Callable[[list[Event]], list[Event]]:
    """The ``streamer_transform_event`` implementations ``hooks`` chained over a batch of
    ``source``."""
    drop = streamer.DROP

    def apply(batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in batch:
            current: Any = event
            for hook in hooks:
                result = hook(event=current, source=source)
                if result is drop:
                    current = None
                    break
                if result is not None:
                    current = result
            if current is not None:
                out.append(current)
        return out

    return apply
