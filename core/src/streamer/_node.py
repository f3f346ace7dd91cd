"""A built node of a pipeline, and the read-only view of a running pipeline that the
operations listener (:mod:`streamer._metrics_http`) serves, so that it depends on this and not
on the runtime that runs the nodes (:mod:`streamer._runtime`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from streamer._api import Context, HoldsEvents
from streamer._inbox import Inbox
from streamer._settings import NodeConfig


@attrs.define(eq=False)
class Node:
    """One source, transform or sink: its table, the object its factory built, and what the
    runtime keeps about it."""

    config: NodeConfig
    obj: Any
    context: Context
    inbox: Inbox | None = None
    #: Between a failure and the restart (the watchdog names that as the cause).
    restarting: bool = False
    #: Counted by the runtime; see ``streamer._runtime.LOSS_KEYS``.
    lost_on_restart: int = 0
    lost_at_shutdown: int = 0

    @property
    def name(self) -> str:
        return self.config.name

    def held_events(self) -> int | None:
        """What a sink that keeps a buffer of its own (:class:`HoldsEvents`) took and has not
        written; ``None`` for any other node (the core counts the batch it took last). Asked
        once: after the sink stopped or was disabled its buffer is counted already (0)."""
        if not isinstance(self.obj, HoldsEvents):
            return None
        if self.inbox is not None and self.inbox.discarding:
            return 0
        return self.obj.held_events()


class PipelineNodes(Protocol):
    """What the ops listener reads of a pipeline: its nodes, by name, in pipeline order
    (their counters, probes, health and inboxes)."""

    @property
    def nodes(self) -> Mapping[str, Node]: ...
