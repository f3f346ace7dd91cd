"""What a plugin implements: sources, transforms and sinks, and what the core hands them.

The core starts every object with ``nursery.start(obj.run, ...)``. ``run`` reports readiness
("connected", "bound", "subscribed") with ``task_status.started()`` and then runs until it is
cancelled. Plugins never receive a nursery: whatever they spawn lives in a nursery that their
own ``run`` opens and owns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import trio

from streamer._events import Event
from streamer._health import Health
from streamer._inbox import Inbox
from streamer._metrics import Metrics
from streamer._pipeline_view import PipelineView
from streamer.history import HistoryRouter


@attrs.frozen
class StreamGap:
    """Part of a source's stream may be missing, for ``symbols`` of ``channel``.

    A source sends it twice through :meth:`Emit.gap`: when a connection is lost
    (``closed=False``; every event up to ``since_ms`` was delivered), and when what was missed
    has been recovered or given up (``closed=True``; ``complete`` tells which). Transforms that
    define ``on_gap`` receive it, so an aggregator can wait for recovered trades instead of
    closing candles without them. Sinks never see it: it is not part of the wire format.
    """

    channel: str
    symbols: tuple[str, ...]
    since_ms: int
    closed: bool = False
    complete: bool = True


class Emit(Protocol):
    """How a source (or a transform's ``run``) hands data downstream."""

    async def __call__(self, batch: list[Event]) -> None:
        """Run the inline transforms on ``batch`` and queue the result for each sink; waits
        only when a sink configured with ``overflow = "block"`` is full. Never call it with an
        empty list, and do not reuse the list afterwards."""

    async def gap(self, gap: StreamGap) -> None:
        """Tell the downstream transforms that part of the stream is missing (or recovered)."""

    async def accepted(self) -> None:
        """Wait until every sink downstream (directly or through inline transforms) has
        accepted what was emitted so far: it came back to ``inbox.get()`` after taking it,
        or dropped it under ``overflow = "drop_oldest"``, or stopped. For sources that
        acknowledge their input upstream only once it is handled (the nats source)."""


class FatalError(Exception):
    """Raised by a plugin for a problem a restart cannot fix (port in use, bad credentials).

    The core stops the pipeline and ``streamer run`` exits with status 1 and this message.
    Any other exception from a sink or source is logged and the object is restarted.
    """


@attrs.define(frozen=True)
class Context:
    """What the core tells a plugin object about its place in the pipeline."""

    #: The node's ``name`` in streamer.toml (defaults to its ``type``).
    name: str
    #: The node's ``type`` in streamer.toml, e.g. ``"bybit.linear"``.
    type: str
    #: A logger named ``streamer.<kind>.<name>``; it is rate-limited for repeated messages.
    logger: logging.Logger
    #: Counters reported by ``streamer run`` at shutdown and in periodic stats, and exposed on
    #: ``/metrics`` with the gauges and probes the node adds (see :mod:`streamer._metrics`).
    metrics: Metrics
    #: Names of the nodes feeding this one (empty for sources).
    inputs: tuple[str, ...] = ()
    #: For transforms: the history of the input sources (:mod:`streamer.history`), filled by
    #: the core once every node is built; empty for sources and sinks.
    history: HistoryRouter = attrs.field(factory=HistoryRouter, eq=False)
    #: Where the node reports its readiness (``/readyz``): see :mod:`streamer._health`.
    health: Health = attrs.field(factory=Health)
    #: A read-only view of every node of the pipeline (status pages): see
    #: :mod:`streamer._pipeline_view`.
    pipeline: PipelineView = attrs.field(factory=PipelineView, eq=False)


class Source(Protocol):
    """Produces batches of events (a Bybit WebSocket, a replay file, ...)."""

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Stream forever: call ``task_status.started()`` once connected, ``await emit(batch)``
        for each batch. Returning ends this source (the pipeline stops when all sources have).
        """


class Transform(Protocol):
    """Turns batches from its inputs into new batches (e.g. trades into klines).

    ``process`` runs inline, on the task of whoever emitted the batch, so a batch goes from the
    socket through the transform into the sink queues without a single extra task switch
    (docs/background.md, "Batches, not events"). ``run`` hosts anything time-driven (closing a
    kline at a boundary) and emits through the ``emit`` it is given.
    """

    def process(self, batch: Sequence[Event]) -> list[Event]:
        """Return the events this batch produces (may be empty). Must not block or await."""
        ...

    # Optional: ``def on_gap(self, gap: StreamGap) -> list[Event]``, called inline when an
    # input source reports a gap (see :class:`StreamGap`); returns events to emit now.

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Background work; call ``task_status.started()`` first. May simply sleep forever."""


class Sink(Protocol):
    """Writes batches somewhere (Redis, clients of a WebSocket server, stdout, ...)."""

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Call ``task_status.started()`` when ready (bound, connected), then loop on
        ``await inbox.get()`` and write what it returns. ``get`` returns an empty list once the
        pipeline is shutting down and the inbox is drained: flush and return then.

        If ``run`` raises, the core logs it and calls ``run`` again with the same inbox after a
        backoff, so ``run`` must be safe to call again on the same object.
        """


class BaseTransform:
    """A convenient base: override ``process``; ``run`` only reports readiness."""

    def process(self, batch: Sequence[Event]) -> list[Event]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()


#: ``factory(config, context)`` builds a source, transform or sink from its structured config.
Factory = Callable[[Any, Context], Any]
