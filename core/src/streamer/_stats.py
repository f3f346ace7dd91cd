"""The throughput log: every ``stats_interval`` seconds one INFO line per source and sink, and
a ``final`` line per node with the totals when the run ends.

A source's line::

    stats bybit: 120.0 msg/s in, 250.5 events/s out, 0 dropped, lag 0.015 s; reconnects=1

A *message* is a batch: what one exchange message or socket read produced (the source
contract), or what a transform made of one. For a source, ``msg/s in`` counts the batches it
emitted and ``events/s out`` the events in them that went downstream (after
``streamer_transform_event``); for a sink, ``msg/s in`` counts the batches queued into its
inbox and ``events/s out`` the events it took from it. Rates and ``dropped`` cover the last
interval; ``dropped`` is every event the node lost (the counters of ``Pipeline.losses``).
``lag`` is how old the newest event it handed on was at the time of the line (now minus the
event's exchange time, a kline's close), ``-`` before the first or when that event is not one
of the core's (a plugin's own type, such as a kline check). After ``;`` come the node's
counters since the start, as before. Transforms keep their counters-only line.

The ``final`` line has the totals of the whole run in the same order::

    final bybit: 432000 msg in, 901800 events out, 0 dropped, lag 0.015 s; reconnects=1

Counting costs the hot path two integer adds and one reference per batch (no per-event work):
the newest event is kept, its time read only when a line is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from streamer import clock
from streamer._events import (
    Derivatives,
    Event,
    Funding,
    Kline,
    Liquidation,
    Price,
    Ticker,
    Trade,
)
from streamer._logs import NOT_RATE_LIMITED

if TYPE_CHECKING:
    from streamer._node import Node
    from streamer._route import Route

log = logging.getLogger("streamer.runtime")


def event_time_ms(event: object) -> int | None:
    """When ``event`` happened, epoch ms: its exchange time, a kline's close; ``None`` for
    what is not one of the core's events (a plugin's own, such as a kline check)."""
    if isinstance(event, Kline):
        return event.timestamp + event.interval
    if isinstance(event, (Trade, Ticker, Price, Liquidation, Derivatives)):
        return event.ts
    if isinstance(event, Funding):
        return event.funding_time
    return None


@attrs.define
class Flow:
    """What a node has passed on so far: batches in, events out, the newest event."""

    messages: int = 0
    events: int = 0
    dropped: int = 0
    newest: Event | None = None


def lag_text(newest: Event | None, now_ms: int) -> str:
    happened = None if newest is None else event_time_ms(newest)
    if happened is None:
        return "lag -"
    # A kline still open closes in the future: it is as fresh as can be.
    return f"lag {max(0, now_ms - happened) / 1000:.3f} s"


def counters_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


class Flows(Protocol):
    """What the stats log reads of a pipeline (``streamer._runtime.Pipeline``)."""

    @property
    def nodes(self) -> Mapping[str, Node]: ...

    def route_of(self, producer: str) -> Route: ...

    def losses(self) -> dict[str, dict[str, int]]: ...

    def metrics(self) -> dict[str, dict[str, int]]: ...


class StatsLog:
    """Writes the periodic and final lines of one pipeline."""

    def __init__(self, pipeline: Flows) -> None:
        self._pipeline = pipeline
        self._last: dict[str, Flow] = {}

    def flows(self) -> dict[str, Flow]:
        """Every source's and sink's flow so far, by node name, in pipeline order."""
        pipeline = self._pipeline
        losses = pipeline.losses()
        out: dict[str, Flow] = {}
        for name, node in pipeline.nodes.items():
            kind = node.config.kind
            if kind == "source":
                route = pipeline.route_of(name)
                own = node.context.metrics
                lost = sum(own.counts[k] for k in own.loss_keys)
                out[name] = Flow(route.batches, route.events, lost, route.newest)
            elif kind == "sink" and node.inbox is not None:
                inbox = node.inbox
                out[name] = Flow(inbox.queued_batches, inbox.taken_events,
                                 sum(losses.get(name, {}).values()), inbox.newest)
        return out

    async def run(self, interval: float) -> None:
        """Log a line per node every ``interval`` seconds (each line covers that interval)."""
        start = trio.current_time()
        self._last = self.flows()
        ticks = 0
        while True:
            ticks += 1
            await trio.sleep_until(start + ticks * interval)
            self.log_interval(interval)

    def log_interval(self, seconds: float) -> None:
        flows = self.flows()
        now_ms = clock.now_ms()
        metrics = self._pipeline.metrics()
        for name, counts in metrics.items():
            flow = flows.get(name)
            if flow is None:
                if counts:
                    _info("stats %s: %s", name, counters_text(counts))
                continue
            before = self._last.get(name, Flow())
            line = (f"{(flow.messages - before.messages) / seconds:.1f} msg/s in, "
                    f"{(flow.events - before.events) / seconds:.1f} events/s out, "
                    f"{flow.dropped - before.dropped} dropped, {lag_text(flow.newest, now_ms)}")
            _info("stats %s: %s", name, _with_counters(line, counts))
        self._last = flows

    def log_final(self) -> None:
        flows = self.flows()
        now_ms = clock.now_ms()
        for name, counts in self._pipeline.metrics().items():
            flow = flows.get(name)
            if flow is None:
                if counts:
                    _info("final %s: %s", name, counters_text(counts))
                continue
            line = (f"{flow.messages} msg in, {flow.events} events out, {flow.dropped} dropped, "
                    f"{lag_text(flow.newest, now_ms)}")
            _info("final %s: %s", name, _with_counters(line, counts))


def _with_counters(line: str, counts: dict[str, int]) -> str:
    return f"{line}; {counters_text(counts)}" if counts else line


def _info(msg: str, *args: object) -> None:
    log.info(msg, *args, extra=NOT_RATE_LIMITED)
