"""The pipeline's metrics in the Prometheus model, read at scrape time.

:class:`PipelineCollector` is a ``prometheus_client`` custom collector: it keeps no
Prometheus objects up to date while events flow. Each scrape walks the nodes, reads their
plain integer counters (:class:`streamer.Metrics`), calls their probes and reads the
sink inboxes. The hot path therefore pays nothing for the exposition; its only cost is the
per-batch integer adds the nodes keep anyway.

Names (docs/operations.md lists them):

- every counter ``key`` of a node of kind ``K`` -> ``streamer_K_<key>_total{node, type}``;
- every gauge and probe sample ``name`` -> ``streamer_K_<name>`` (``_total`` for counters),
  with the sample's own labels added;
- per sink: ``streamer_sink_inbox_depth_batches``, ``..._inbox_capacity_batches``,
  ``..._inbox_dropped_batches_total``, ``..._inbox_dropped_events_total``;
- ``streamer_ops_*``: the ops listener's own connection counts (``listener`` samples);
- ``streamer_event_loop_lag_seconds``, ``streamer_ready``, ``streamer_info``, and the
  standard ``process_*`` metrics (RSS, CPU seconds, open files) of ``ProcessCollector``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

import streamer
from streamer._health import Health
from streamer._metrics import Sample

if TYPE_CHECKING:
    from streamer._node import PipelineNodes

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
#: How often the event-loop lag is sampled (seconds).
LAG_INTERVAL = 0.5
#: /healthz looks at the largest lag of this many recent seconds.
LAG_WINDOW = 10.0


def metric_name(*parts: str) -> str:
    """``streamer_<parts>`` with anything outside ``[a-zA-Z0-9_]`` turned into ``_``."""
    return _INVALID.sub("_", "_".join(("streamer", *parts)))


class LoopLag:
    """Samples how late the trio loop wakes a sleeping task: the event-loop lag."""

    def __init__(self, interval: float = LAG_INTERVAL, window: float = LAG_WINDOW) -> None:
        self.interval = interval
        self.window = window
        #: Lag of the newest sample, seconds.
        self.lag = 0.0
        #: Largest lag seen since the process started, seconds.
        self.max_lag = 0.0
        #: trio time of the newest sample (None before the first).
        self.last_tick: float | None = None
        self._recent: deque[tuple[float, float]] = deque()

    def recent_max(self) -> float:
        """The largest lag of the samples of the last ``window`` seconds."""
        return max((lag for _, lag in self._recent), default=0.0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            due = trio.current_time() + self.interval
            await trio.sleep_until(due)
            now = trio.current_time()
            self.lag = max(0.0, now - due)
            self.max_lag = max(self.max_lag, self.lag)
            self.last_tick = now
            recent = self._recent
            recent.append((now, self.lag))
            while recent and recent[0][0] < now - self.window:
                recent.popleft()


class _Families:
    """Metric families by name, created on first use. A sample whose family exists with
    another type is counted in ``streamer_metrics_conflicting_samples`` instead; a second
    sample of the same series (a probe repeating a counter) is left out."""

    def __init__(self) -> None:
        self.by_name: dict[str, Metric] = {}
        self.conflicts = 0
        self._series: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def add(self, name: str, kind: str, help_text: str, labels: dict[str, str],
            value: float) -> None:
        base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
        family = self.by_name.get(base)
        if family is None:
            family = self.by_name[base] = Metric(base, help_text or base, kind)
        elif family.type != kind:
            self.conflicts += 1
            return
        series = (base, frozenset(labels.items()))
        if series in self._series:
            return
        self._series.add(series)
        family.add_sample(base + "_total" if kind == "counter" else base, labels, value)


class PipelineCollector(Collector):
    """Reads a running pipeline whenever it is collected."""

    def __init__(self, pipeline: PipelineNodes, lag: LoopLag,
                 readiness: Callable[[], dict[str, list[str]]],
                 listener: Callable[[], Iterable[Sample]] | None = None) -> None:
        self.pipeline = pipeline
        self.lag = lag
        self.readiness = readiness
        self.listener = listener

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        for node in self.pipeline.nodes.values():
            kind = node.config.kind
            base = {"node": node.name, "type": node.config.type}
            metrics = node.context.metrics
            for key, value in list(metrics.counts.items()):
                families.add(metric_name(kind, key), "counter",
                             f"Count of {key} in {kind} nodes", base, value)
            for sample in metrics.samples():
                families.add(metric_name(kind, sample.name), sample.kind, sample.help,
                             {**base, **sample.labels}, sample.value)
            inbox = node.inbox
            if inbox is not None:
                families.add(metric_name("sink_inbox_depth_batches"), "gauge",
                             "Batches waiting in the sink's inbox", base, len(inbox))
                families.add(metric_name("sink_inbox_capacity_batches"), "gauge",
                             "Size of the sink's inbox (queue_size)", base, inbox.maxsize)
                families.add(metric_name("sink_inbox_dropped_batches_total"), "counter",
                             "Batches dropped by a full inbox (overflow = drop_oldest)",
                             base, inbox.dropped_batches)
                families.add(metric_name("sink_inbox_dropped_events_total"), "counter",
                             "Events in the batches dropped by a full inbox", base,
                             inbox.dropped_events)
        for sample in self.listener() if self.listener is not None else ():
            families.add(metric_name("ops", sample.name), sample.kind, sample.help,
                         dict(sample.labels), sample.value)
        families.add(metric_name("event_loop_lag_seconds"), "gauge",
                     "How late the trio event loop woke a sleeping task (newest sample)",
                     {}, self.lag.lag)
        families.add(metric_name("event_loop_lag_max_seconds"), "gauge",
                     "Largest event-loop lag since the start", {}, self.lag.max_lag)
        families.add(metric_name("ready"), "gauge",
                     "1 when /readyz answers 200, else 0", {},
                     0.0 if self.readiness() else 1.0)
        families.add(metric_name("info"), "gauge", "streamer version",
                     {"version": streamer.__version__}, 1.0)
        if families.conflicts:
            families.add(metric_name("metrics_conflicting_samples"), "gauge",
                         "Samples left out: their name is used with another type", {},
                         families.conflicts)
        yield from families.by_name.values()


def not_ready(pipeline: PipelineNodes, max_data_age: float | None,
              started: bool) -> dict[str, list[str]]:
    """Node name -> why it is not ready; empty when the whole pipeline is ready."""
    out: dict[str, list[str]] = {}
    if not started:
        out["pipeline"] = ["starting"]
    now = trio.current_time()
    for node in pipeline.nodes.values():
        health: Health = node.context.health
        problems = health.problems(now, max_data_age)
        inbox = node.inbox
        if inbox is not None and inbox.closed and started:
            problems.append("sink stopped; its input is discarded")
        if problems:
            out[node.name] = problems
    return out


def make_registry(collector: Any) -> CollectorRegistry:
    """A registry of its own (never the global one): the pipeline and the process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry
