"""Routing: the ``emit`` of one producer (a source or a transform's ``run``).

``await emit(batch)`` runs each downstream transform's ``process`` and queues the batch into
each downstream sink's :class:`~streamer.Inbox`, on the emitting task, so a batch travels from
the socket read to every sink queue without a task switch. Sources' batches first go through
the ``streamer_transform_event`` hooks (:func:`hook_applier`).

A producer cancelled while a full ``overflow = "block"`` inbox holds it (a source stopped at
shutdown) has counted the batch as passed on: that inbox counts it lost
(``Inbox.cancelled_events``) and the rest of the route gets it without waiting
(:meth:`Route.pass_on_now`). Only the cancelled path pays for this.

A stream gap (``emit.gap``) goes to the downstream transforms that handle gaps and, first, to
every sink reachable from the producer that notes them (:class:`~streamer.NotesGaps`), with
the position it takes in that sink's inbox.

Nothing a plugin's code raises here leaves the ``emit``: a source awaiting it has already
noted the batch as delivered (Bybit's gap recovery marks the newest trade), so an exception
thrown back into it would lose the batch unreported. A failing transform is counted in its
``errors`` and the batch goes on to the others; a failing event hook is counted in the
source's ``hook_failures`` and the event goes on as it was before that hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

import streamer
from streamer._api import Emit, HandlesGaps, NotesGaps, StreamGap
from streamer._events import Event
from streamer._inbox import Inbox
from streamer._logs import RateLimitedLog
from streamer._metrics import Metrics

if TYPE_CHECKING:
    from streamer._node import Node

log = logging.getLogger("streamer.runtime")


class Route:
    """The ``emit`` of one producer: its downstream transforms (run inline) and sink inboxes."""

    __slots__ = ("_apply_hooks", "_gap_sinks", "_inboxes", "_transforms", "batches", "events",
                 "newest")

    def __init__(
        self,
        transforms: list[tuple[Node, Emit]],
        inboxes: list[Inbox],
        apply_hooks: Callable[[list[Event]], list[Event]] | None,
        gap_sinks: list[Node] | None = None,
    ) -> None:
        self._transforms = transforms
        self._inboxes = inboxes
        self._apply_hooks = apply_hooks
        #: The sinks among ``inboxes``' that note gaps (NotesGaps).
        self._gap_sinks = gap_sinks or []
        #: Batches emitted, events passed on and the newest of them (:mod:`streamer._stats`).
        self.batches = 0
        self.events = 0
        self.newest: Event | None = None

    def _admit(self, batch: list[Event]) -> list[Event]:
        """Count ``batch`` and run the event hooks over it: what goes on ([] for nothing)."""
        self.batches += 1
        if self._apply_hooks is not None:
            batch = self._apply_hooks(batch)
            if not batch:
                return batch
        self.events += len(batch)
        self.newest = batch[-1]
        return batch

    async def __call__(self, batch: list[Event]) -> None:
        batch = self._admit(batch)
        if not batch:
            return
        # Sinks first: a sink fed by both sees a trade before the kline it produced.
        inboxes = self._inboxes
        try:
            for inbox in inboxes:
                await inbox.put(batch)
        except trio.Cancelled:
            # `inbox` counted the batch (cancelled_events); the rest still get it.
            self._pass_on_now(batch, inboxes[inboxes.index(inbox) + 1:], self._transforms)
            raise
        transforms = self._transforms
        for tnode, temit in transforms:
            try:
                out = tnode.obj.process(batch)
            except Exception as exc:  # one bad transform must not stop a source
                _transform_failed(tnode, "a batch", exc)
                continue
            if out:
                try:
                    await temit(out)
                except trio.Cancelled:
                    # `temit` passed `out` on itself; the transforms after it still run.
                    rest = transforms[transforms.index((tnode, temit)) + 1:]
                    self._pass_on_now(batch, [], rest)
                    raise

    def pass_on_now(self, batch: list[Event]) -> None:
        """:meth:`__call__` without waiting, for a producer already cancelled: each inbox
        queues the batch if it has room, else counts it (:meth:`Inbox.offer`), so a shutdown
        that cancels a source waiting on one full sink loses nothing uncounted."""
        batch = self._admit(batch)
        if not batch:
            return
        self._pass_on_now(batch, self._inboxes, self._transforms)

    @staticmethod
    def _pass_on_now(batch: list[Event], inboxes: list[Inbox],
                     transforms: list[tuple[Node, Emit]]) -> None:
        for inbox in inboxes:
            inbox.offer(batch)
        for tnode, temit in transforms:
            try:
                out = tnode.obj.process(batch)
            except Exception as exc:
                _transform_failed(tnode, "a batch", exc)
                continue
            if out:
                assert isinstance(temit, Route)
                temit.pass_on_now(out)

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

    def _reachable_gap_sinks(self) -> list[Node]:
        sinks = list(self._gap_sinks)
        for _, temit in self._transforms:
            if isinstance(temit, Route):
                sinks.extend(s for s in temit._reachable_gap_sinks() if s not in sinks)
        return sinks

    async def gap(self, gap: StreamGap) -> None:
        for snode in self._reachable_gap_sinks():
            assert isinstance(snode.obj, NotesGaps) and snode.inbox is not None
            try:
                snode.obj.note_gap(gap, snode.inbox.position)
            except Exception as exc:  # nor a bad gap handler of a sink
                snode.context.metrics.inc("errors")
                snode.context.logger.error("sink %r failed on a stream gap: %s: %s",
                                           snode.name, type(exc).__name__, exc, exc_info=exc)
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
    source: str, hooks: list[Callable[..., Any]], metrics: Metrics
) -> Callable[[list[Event]], list[Event]]:
    """The ``streamer_transform_event`` chain over one source's batches. A hook that raises
    leaves that event as it was and the chain goes on; each failure is counted in the source's
    ``hook_failures``, logged once per hook and exception type (rate-limited: a hook that
    fails on every event must not write a line per event)."""
    drop = streamer.DROP
    failures = RateLimitedLog(log)

    def failed(hook: Callable[..., Any], event: Any, exc: Exception) -> None:
        metrics.inc("hook_failures")
        name = f"{hook.__module__}.{hook.__qualname__}"
        failures.error(f"{name} {type(exc).__name__}",
                       "event hook %s failed on a %s of source %r: %s: %s; the event goes on "
                       "as it was (counted in hook_failures)", name, type(event).__name__,
                       source, type(exc).__name__, exc)

    def apply(batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in batch:
            current: Any = event
            for hook in hooks:
                try:
                    result = hook(event=current, source=source)
                except Exception as exc:
                    failed(hook, current, exc)
                    continue
                if result is drop:
                    current = None
                    break
                if result is not None:
                    current = result
            if current is not None:
                out.append(current)
        return out

    return apply
