"""A read-only view of the running pipeline for plugins that show its state (``context.pipeline``).

A sink that serves a status page (the websocket sink's web view) reads here what ``/metrics``,
``/readyz`` and the throughput log read: every node's counters, gauges and probe samples,
readiness parts, and for sources and sinks their flow (batches in, events out, events lost).
Nothing is kept up to date for it: :meth:`PipelineView.nodes` reads the nodes when it is
called, so the hot path pays nothing, and it costs as much as one ``/metrics`` scrape. It
returns copies and never any node's options, so what a plugin shows from it holds no secret
that a plugin's own counters, samples or readiness reasons do not.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from streamer._health import PartState
from streamer._metrics import Sample


@attrs.frozen
class NodeStatus:
    """One node of the pipeline, as it is at the time it was read."""

    name: str
    #: ``"source"``, ``"transform"`` or ``"sink"``.
    kind: str
    #: The node's ``type`` in streamer.toml, e.g. ``"bybit.linear"``.
    type: str
    #: The node's counters (:class:`streamer.Metrics`) and, for a sink, the runtime's loss
    #: counters of it (``inbox_dropped_events``, ``lost_on_restart``, ...).
    counters: dict[str, int]
    #: Gauges and probe samples (connections, topics, ``last_message_age_seconds``, ...).
    samples: list[Sample]
    #: Readiness parts as ``/readyz`` sees them.
    parts: list[PartState]
    #: Sources: batches emitted; sinks: batches queued into the inbox (0 for transforms).
    messages: int = 0
    #: Sources: events handed on; sinks: events taken from the inbox.
    events: int = 0
    #: Events this node lost (the counters of ``Pipeline.losses`` and the source's own).
    lost: int = 0
    #: Sinks: batches waiting in the inbox now, and its size.
    inbox_depth: int | None = None
    inbox_capacity: int | None = None


class PipelineView:
    """What every node's ``context.pipeline`` is: the same view for every node of a pipeline.

    Empty (``nodes()`` returns ``[]``) for a context built outside a pipeline (a plugin's own
    test); the runtime binds it to the pipeline it builds.
    """

    __slots__ = ("_read",)

    def __init__(self) -> None:
        self._read: Callable[[], list[NodeStatus]] | None = None

    def bind(self, read: Callable[[], list[NodeStatus]]) -> None:
        """Called by the runtime once, when the pipeline is built."""
        self._read = read

    def nodes(self) -> list[NodeStatus]:
        """Every node, in pipeline order, read now (do not call it per event)."""
        return [] if self._read is None else self._read()
