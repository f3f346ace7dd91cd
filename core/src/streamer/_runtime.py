"""Run a pipeline: start sinks, transforms and sources in one trio nursery, route batches,
supervise, and shut down gracefully.

Routing is inline (:mod:`streamer._route`): ``await emit(batch)`` runs each downstream
transform's ``process`` and queues the batch into each downstream sink's
:class:`~streamer.Inbox`, on the emitting task; the only wake-up is the sink's own. When no
source is live, sinks that did not choose their ``overflow`` block (:mod:`streamer._liveness`).
The throughput log is :mod:`streamer._stats`.

Every event the pipeline accepted and did not hand to a sink is counted per sink (see
:meth:`Pipeline.losses`): dropped by a full ``drop_oldest`` inbox, waiting for room in a full
``block`` inbox when its producer was cancelled (the shutdown), held by a sink that failed
and restarted, discarded after a sink stopped or was disabled, or left over when the shutdown
deadline cut a sink off. A sink that stops taking from a non-empty inbox for its
``stall_timeout`` is reported as stalled.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio

from streamer._api import (
    NODE_CAPABILITIES,
    Context,
    DrivesClock,
    Emit,
    FatalError,
    HasHistory,
    HasShutdownTimeout,
    HasStoredHistory,
    HoldsEvents,
    NotesGaps,
    check_capabilities,
)
from streamer._backoff import Backoff
from streamer._inbox import Inbox
from streamer._liveness import block_when_offline, live_upstream
from streamer._logs import NOT_RATE_LIMITED
from streamer._metrics import Metrics
from streamer._node import Node
from streamer._pipeline_view import NodeStatus, PipelineView
from streamer._plugins import PluginManager
from streamer._route import Route, hook_applier
from streamer._settings import PipelineConfig
from streamer._sink_watch import WATCH_INTERVAL, SinkWatch
from streamer._stats import StatsLog

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger("streamer.runtime")

#: How often sink drops are checked and reported (seconds).
DROP_REPORT_INTERVAL = 5.0
#: Seconds the pipeline waits past a sink's own ``shutdown_timeout`` option before cutting it
#: off, so the sink can still log what it could not write.
REPORT_GRACE = 1.0
#: The per-sink loss counters, in the order they are reported.
LOSS_KEYS = ("inbox_dropped_events", "inbox_cancelled_events", "lost_on_restart",
             "lost_after_stop", "lost_at_shutdown")


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups flattened (``exc`` alone if it is no
    group): what supervision and ``streamer run`` decide on."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(exception_leaves(inner))
        return out
    return [exc]


class Pipeline:
    """A built pipeline. ``await nursery.start(pipeline.run)``; ``pipeline.shutdown()``."""

    def __init__(self, config: PipelineConfig, pm: PluginManager) -> None:
        self.config = config
        block_when_offline(config)
        self.nodes: dict[str, Node] = {}
        view = PipelineView()
        for nc in config.nodes():
            context = Context(
                name=nc.name,
                type=nc.type,
                logger=logging.getLogger(f"streamer.{nc.kind}.{nc.name}"),
                metrics=Metrics(),
                inputs=nc.inputs,
                pipeline=view,
                live_input=live_upstream(config, nc),
            )
            obj = nc.spec.factory(nc.options, context)
            check_capabilities(obj, NODE_CAPABILITIES[nc.kind])
            inbox = Inbox(nc.name, nc.queue_size, nc.overflow) if nc.kind == "sink" else None
            self.nodes[nc.name] = Node(nc, obj, context, inbox)
        self._wire_history()
        self._event_hooks = pm.event_transformers()
        self._emits: dict[str, Route] = {}
        for node in self.nodes.values():
            if node.config.kind != "sink":
                self._emit_for(node.name)
        self._sources_scope: trio.CancelScope | None = None
        self._shutdown_requested = False
        self._watch = SinkWatch(self.nodes.values())
        self._running_sinks: set[str] = set()
        self._stats = StatsLog(self)
        view.bind(self.status)
        self.fatal: FatalError | None = None

    # -- public --------------------------------------------------------------------------

    def node(self, name: str) -> Any:
        """The source, transform or sink object built for the node named ``name``."""
        return self.nodes[name].obj

    def trio_clock(self) -> trio.abc.Clock | None:
        """The clock a source asks trio to run with (its ``trio_clock`` attribute, e.g. a
        replay driving time from its recording), or ``None``. At most one source may."""
        clocks = [(n.name, n.obj.trio_clock) for n in self.nodes.values()
                  if n.config.kind == "source" and isinstance(n.obj, DrivesClock)]
        if len(clocks) > 1:
            names = ", ".join(name for name, _ in clocks)
            raise ValueError(f"sources {names} each want to drive the clock; only one may")
        return clocks[0][1] if clocks else None

    def route_of(self, producer: str) -> Route:
        """The ``emit`` handed to the source or transform named ``producer``."""
        return self._emits[producer]

    def metrics(self) -> dict[str, dict[str, int]]:
        out = {name: n.context.metrics.snapshot() for name, n in self.nodes.items()}
        losses = self.losses()
        for name, n in self.nodes.items():
            if n.inbox is not None and n.inbox.dropped_batches:
                out[name]["inbox_dropped_batches"] = n.inbox.dropped_batches
            out[name].update(losses.get(name, {}))
        return out

    def status(self) -> list[NodeStatus]:
        """Every node as it is now (``context.pipeline.nodes()``)."""
        flows = self._stats.flows()
        counters = self.metrics()
        out = []
        for name, n in self.nodes.items():
            flow = flows.get(name)
            inbox = n.inbox
            out.append(NodeStatus(
                name, n.config.kind, n.config.type, counters[name],
                n.context.metrics.samples(), n.context.health.states(),
                messages=flow.messages if flow else 0, events=flow.events if flow else 0,
                lost=flow.dropped if flow else 0,
                inbox_depth=None if inbox is None else len(inbox),
                inbox_capacity=None if inbox is None else inbox.maxsize))
        return out

    def losses(self) -> dict[str, dict[str, int]]:
        """Per sink, the non-zero loss counters: the runtime's (:data:`LOSS_KEYS`) and the
        sink's own (:meth:`Metrics.lost`); a name in both is the sum."""
        out: dict[str, dict[str, int]] = {}
        for name, n in self.nodes.items():
            if n.inbox is None:
                continue
            counts = {
                "inbox_dropped_events": n.inbox.dropped_events,
                "inbox_cancelled_events": n.inbox.cancelled_events,
                "lost_on_restart": n.lost_on_restart,
                "lost_after_stop": n.inbox.lost_events,
                "lost_at_shutdown": n.lost_at_shutdown,
            }
            own = n.context.metrics
            for key in sorted(own.loss_keys):
                counts[key] = counts.get(key, 0) + own.counts[key]
            counts = {k: v for k, v in counts.items() if v}
            if counts:
                out[name] = counts
        return out

    def lost_total(self) -> int:
        """Every event counted in :meth:`losses`; ``streamer run`` exits 3 when it is not 0."""
        return sum(sum(c.values()) for c in self.losses().values())

    def running_sinks(self) -> list[str]:
        """Names of the sinks whose task has not ended (for a report of a stuck shutdown)."""
        return sorted(self._running_sinks)

    def shutdown_timeout(self) -> float:
        """How long the sinks get to flush once the sources have stopped: the pipeline's
        ``shutdown_timeout``, or a sink's own ``shutdown_timeout`` + :data:`REPORT_GRACE` when
        that is longer (so it can report what it failed to write before it is cut off)."""
        timeout = self.config.settings.shutdown_timeout
        for node in self.nodes.values():
            options = node.config.options
            if node.inbox is not None and isinstance(options, HasShutdownTimeout):
                timeout = max(timeout, float(options.shutdown_timeout) + REPORT_GRACE)
        return timeout

    def report_cut_off(self) -> None:
        """The hard stop's last word, when a sink that cancellation cannot reach holds up the
        run: count what the sinks' inboxes still hold and what each sink holds (the batch in
        a stuck sink's hands, or its own buffer and blocked write: HoldsEvents) and log the
        ``final`` and ``events lost`` lines ``run`` would have."""
        self._count_left_over([n for n in self.nodes.values() if n.inbox is not None])
        self._log_summary()

    def shutdown(self) -> None:
        """Stop the sources; ``run`` then drains the inboxes, lets sinks flush and returns."""
        self._shutdown_requested = True
        if self._sources_scope is not None:
            self._sources_scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sinks = [n for n in self.nodes.values() if n.config.kind == "sink"]
        transforms = [n for n in self.nodes.values() if n.config.kind == "transform"]
        sources = [n for n in self.nodes.values() if n.config.kind == "source"]
        try:
            async with trio.open_nursery() as sink_nursery:
                await self._start_all(sink_nursery, sinks)
                async with trio.open_nursery() as producer_nursery:
                    producer_nursery.start_soon(self._report_loop)
                    if self.config.settings.stats_interval:
                        producer_nursery.start_soon(self._stats.run,
                                                    self.config.settings.stats_interval)
                    await self._start_all(producer_nursery, transforms)
                    with trio.CancelScope() as sources_scope:
                        self._sources_scope = sources_scope
                        if self._shutdown_requested:
                            sources_scope.cancel()
                        async with trio.open_nursery() as source_nursery:
                            await self._start_all(source_nursery, sources)
                            log.info("pipeline running: %d source(s), %d transform(s), "
                                     "%d sink(s)", len(sources), len(transforms), len(sinks))
                            task_status.started()
                    if not sources_scope.cancelled_caught:
                        log.info("every source has ended")
                    producer_nursery.cancel_scope.cancel()
                for node in sinks:
                    assert node.inbox is not None
                    node.inbox.close()
                timeout = self.shutdown_timeout()
                sink_nursery.cancel_scope.deadline = trio.current_time() + timeout
            if sink_nursery.cancel_scope.cancelled_caught:
                log.warning("sinks did not finish flushing within %.1fs; cancelled", timeout)
        finally:
            self._count_left_over(sinks)
            self._log_summary()

    def _upstream_sources(self, node: Node) -> list[str]:
        """The sources feeding ``node``, directly or through transforms, nearest first."""
        found: list[str] = []
        seen: set[str] = set()
        pending = list(node.config.inputs)
        while pending:
            name = pending.pop(0)
            upstream = self.nodes.get(name)
            if upstream is None or name in seen:
                continue
            seen.add(name)
            if upstream.config.kind == "transform":
                pending.extend(upstream.config.inputs)
            else:
                found.append(name)
        return found

    def _wire_history(self) -> None:
        """Fill each transform's ``context.history``: the history of the sources upstream
        of it, and the stored history of the sinks that take one of those sources directly
        (a transform between could drop some of its events)."""
        stores = [(n, {i for i in n.config.inputs if self.nodes[i].config.kind == "source"})
                  for n in self.nodes.values()
                  if n.config.kind == "sink" and isinstance(n.obj, HasStoredHistory)]
        for node in self.nodes.values():
            if node.config.kind != "transform":
                continue
            sources = self._upstream_sources(node)
            for name in sources:
                upstream = self.nodes[name]
                if isinstance(upstream.obj, HasHistory):
                    node.context.history.add(name, upstream.obj.history)
            for sink, stored in stores:
                if stored.intersection(sources):
                    node.context.history.add_stored(sink.name, sink.obj.stored_history)

    # -- starting and supervising -----------------------------------------------------------

    async def _start_all(self, nursery: trio.Nursery, nodes: Sequence[Node]) -> None:
        """Start ``nodes`` concurrently; return once each has reported ready (or failed and
        gone into its restart loop)."""
        async with trio.open_nursery() as starters:
            for node in nodes:
                starters.start_soon(nursery.start, self._supervise, node)

    async def _supervise(
        self, node: Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        kind = node.config.kind
        if kind == "sink":
            self._running_sinks.add(node.name)
            try:
                await self._supervise_loop(node, task_status)
            finally:
                self._running_sinks.discard(node.name)
        else:
            await self._supervise_loop(node, task_status)

    async def _supervise_loop(self, node: Node, task_status: trio.TaskStatus[None]) -> None:
        kind = node.config.kind
        arg: Any = node.inbox if kind == "sink" else self._emits[node.name]
        backoff = Backoff(initial=0.5, maximum=30.0)
        started = False
        while True:
            failure: BaseException | None = None
            try:
                async with trio.open_nursery() as inner:
                    await inner.start(node.obj.run, arg)
                    if not started:
                        started = True
                        task_status.started()
                    backoff.reset()
            except (Exception, BaseExceptionGroup) as exc:
                leaves = exception_leaves(exc)
                if all(isinstance(e, trio.Cancelled) for e in leaves):
                    raise
                fatal = next((e for e in leaves if isinstance(e, FatalError)), None)
                if fatal is not None and kind == "sink" and node.config.on_fatal == "disable":
                    self._disable(node, fatal)
                    if not started:
                        task_status.started()
                    return
                for leaf in leaves:
                    if isinstance(leaf, FatalError):
                        self.fatal = leaf
                        raise leaf from None
                    if isinstance(leaf, (KeyboardInterrupt, SystemExit)):
                        raise
                failure = next(e for e in leaves if not isinstance(e, trio.Cancelled))
            if failure is None:
                # run() returned: a source that ran out, or a sink told to stop.
                if kind == "sink" and node.inbox is not None and not node.inbox.closed:
                    lost = node.inbox.discard(node.held_events())
                    node.context.logger.warning(
                        "sink %r stopped; its input is discarded and counted in "
                        "lost_after_stop (%d so far)", node.name, lost)
                if not started:
                    task_status.started()
                return
            delay = backoff.next()
            node.context.metrics.inc("restarts")
            if node.inbox is not None and node.inbox.in_flight:
                # A sink that holds a buffer of its own (HoldsEvents) still holds the batch.
                if not isinstance(node.obj, HoldsEvents):
                    node.lost_on_restart += node.inbox.in_flight
                node.inbox.in_flight = 0
            node.context.logger.error(
                "%s %r failed: %s: %s; restarting in %.1fs", kind, node.name,
                type(failure).__name__, failure, delay, exc_info=failure,
            )
            if not started:
                started = True
                task_status.started()
            node.restarting = True
            try:
                await trio.sleep(delay)
            finally:
                node.restarting = False

    def _disable(self, node: Node, error: FatalError) -> None:
        assert node.inbox is not None
        lost = node.inbox.discard(node.held_events())
        node.context.metrics.inc("disabled")
        node.context.logger.error(
            "sink %r disabled (on_fatal = \"disable\"): %s; the other sinks go on, its events "
            "are discarded and counted in lost_after_stop (%d so far)", node.name, error, lost,
            extra=NOT_RATE_LIMITED,
        )

    def _count_left_over(self, sinks: Sequence[Node]) -> None:
        """What the sinks still held or had queued when they were cut off (the shutdown
        deadline, a fatal error stopping the run, the hard stop) is lost: the batch each
        took last, or what a sink with a buffer of its own says it holds (HoldsEvents)."""
        for node in sinks:
            inbox = node.inbox
            assert inbox is not None
            node.lost_at_shutdown += inbox.take_left_over(node.held_events())

    # -- routing ---------------------------------------------------------------------------

    def _emit_for(self, producer: str) -> Route:
        if producer in self._emits:
            return self._emits[producer]
        transforms: list[tuple[Node, Emit]] = []
        inboxes: list[Inbox] = []
        gap_sinks: list[Node] = []
        for node in self.nodes.values():
            if producer in node.config.inputs:
                if node.config.kind == "transform":
                    transforms.append((node, self._emit_for(node.name)))
                elif node.inbox is not None:
                    inboxes.append(node.inbox)
                    if isinstance(node.obj, NotesGaps):
                        gap_sinks.append(node)
        is_source = self.nodes[producer].config.kind == "source"
        hooks = self._event_hooks if is_source else []
        metrics = self.nodes[producer].context.metrics
        apply_hooks = hook_applier(producer, hooks, metrics) if hooks else None
        route = Route(transforms, inboxes, apply_hooks, gap_sinks)
        self._emits[producer] = route
        return route

    # -- reporting -------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        next_drops = trio.current_time() + DROP_REPORT_INTERVAL
        while True:
            await trio.sleep(WATCH_INTERVAL)
            now = trio.current_time()
            self._watch.check_stalls(now)
            if now >= next_drops:
                next_drops += DROP_REPORT_INTERVAL
                self._watch.report_drops()

    def _log_summary(self) -> None:
        self._watch.report_drops()
        self._stats.log_final()
        losses = self.losses()
        if losses:
            log.error("events lost: %d in all; %s", self.lost_total(), "; ".join(
                f"{name} " + ", ".join(f"{k}={v}" for k, v in counts.items())
                for name, counts in losses.items()), extra=NOT_RATE_LIMITED)
