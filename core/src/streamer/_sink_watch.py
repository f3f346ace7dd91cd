"""The runtime's eye on its sinks: a sink that takes nothing from a non-empty inbox for its
``stall_timeout`` is reported (once per stall, with what it is blocked in and what that does
to the rest of the pipeline), and so are the batches a full ``drop_oldest`` inbox dropped.

Checked from the pipeline's report loop (every :data:`WATCH_INTERVAL` s); it reads the inbox's
counters only, so a sink stuck in a worker thread is seen as surely as one stuck in trio.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from streamer._api import ReportsBusy
from streamer._logs import NOT_RATE_LIMITED

if TYPE_CHECKING:
    from streamer._node import Node

#: How often the sinks are checked for a stall (seconds).
WATCH_INTERVAL = 1.0


@attrs.define
class _Seen:
    takes: int = 0
    since: float = 0.0
    stalled: bool = False
    reported_drops: int = 0


class SinkWatch:
    """Stall and drop reports for the sinks among ``nodes``."""

    def __init__(self, nodes: Iterable[Node]) -> None:
        self._sinks = [n for n in nodes if n.inbox is not None]
        self._seen = {n.name: _Seen() for n in self._sinks}

    def check_stalls(self, now: float) -> None:
        for node in self._sinks:
            inbox, seen = node.inbox, self._seen[node.name]
            assert inbox is not None
            if inbox.closed:
                continue
            if not len(inbox) or inbox.takes != seen.takes:
                if seen.stalled:
                    node.context.logger.warning("sink %r is taking from its inbox again after "
                                                "%.1fs", node.name, now - seen.since)
                    seen.stalled = False
                seen.takes, seen.since = inbox.takes, now
                continue
            if seen.stalled or now - seen.since < node.config.stall_timeout:
                continue
            seen.stalled = True
            node.context.metrics.inc("stalls")
            busy = node.obj.busy_with if isinstance(node.obj, ReportsBusy) else None
            if node.restarting:
                cause = "it failed and waits to be restarted"
            elif busy:
                cause = f"it is blocked in {busy}"
            else:
                cause = f"it is still handling the {inbox.in_flight} event(s) it took last"
            effect = ("its producers wait for it (overflow = \"block\")"
                      if inbox.overflow == "block" else
                      "its oldest batches are dropped and counted; the other sinks go on")
            node.context.logger.warning(
                "sink %r stalled: nothing taken from its inbox for %.1fs with %d batch(es) "
                "(%d events) waiting; %s; %s", node.name, now - seen.since, len(inbox),
                inbox.queued_events, cause, effect, extra=NOT_RATE_LIMITED,
            )

    def report_drops(self) -> None:
        for node in self._sinks:
            inbox, seen = node.inbox, self._seen[node.name]
            assert inbox is not None
            if inbox.dropped_batches > seen.reported_drops:
                node.context.logger.warning(
                    "sink %r is too slow: dropped %d oldest batch(es) (%d events in all so far)",
                    node.name, inbox.dropped_batches - seen.reported_drops, inbox.dropped_events,
                )
                seen.reported_drops = inbox.dropped_batches
