"""Named counters (malformed messages, drops, late trades, reconnects, ...) and gauges.

Plain integer adds on a dict: cheap enough to bump per batch. Never bump per event in a hot
loop when a per-batch ``add`` will do.

Gauges (connections, subscribed topics, the age of the newest message, ...) are *read*, not
pushed: a plugin registers a probe, a function the metrics endpoint calls at scrape time, so
keeping them costs the hot path nothing. A value that only changes on rare occasions
(connect, subscribe) may instead be stored with :meth:`Metrics.set`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import attrs


@attrs.frozen
class Sample:
    """One value of a gauge or counter that a probe reports at scrape time.

    ``name`` is the metric's base name without prefix, e.g. ``"subscribed_topics"``;
    ``kind`` is ``"gauge"`` or ``"counter"`` (a counter only ever goes up; the exposition adds
    ``_total``). ``labels`` tell the series apart, e.g. ``{"connection": "linear#0"}``.
    """

    name: str
    value: float
    labels: Mapping[str, str] = attrs.field(factory=dict)
    kind: str = "gauge"
    help: str = ""


#: A probe returns the samples of its node right now; it must not block or await.
Probe = Callable[[], Iterable[Sample]]


class Metrics:
    """Counters of one pipeline node, keyed by a short name such as ``"malformed"``, plus the
    gauges and probes it exposes."""

    __slots__ = ("counts", "gauges", "loss_keys", "probes")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        #: The counters bumped with :meth:`lost`: events this node lost.
        self.loss_keys: set[str] = set()
        #: Gauges set with :meth:`set`, by name.
        self.gauges: dict[str, float] = {}
        #: Functions called at scrape time (see :meth:`add_probe`).
        self.probes: list[Probe] = []

    def inc(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def lost(self, key: str, n: int) -> None:
        """Count ``n`` events this sink lost by itself under ``key``: its own buffer full, an
        event it cannot encode, what it still held when it was cut off or hit a fatal error.
        The runtime adds every such counter to the run's losses (the ``events lost`` line and
        ``streamer run``'s exit status 3), next to the ones it counts at the inbox."""
        self.loss_keys.add(key)
        self.counts[key] += n

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def set(self, key: str, value: float) -> None:
        """Set the gauge ``key`` (for values that change rarely; else use a probe)."""
        self.gauges[key] = value

    def add_probe(self, probe: Probe) -> None:
        """Call ``probe`` whenever the metrics are read; it returns :class:`Sample` objects."""
        self.probes.append(probe)

    def samples(self) -> list[Sample]:
        """The gauges and every probe's samples, now. A failing probe is skipped."""
        out = [Sample(k, v) for k, v in self.gauges.items()]
        failed = 0
        for probe in self.probes:
            try:
                out.extend(probe())
            except Exception:  # a broken probe must not break the whole scrape
                failed += 1
        if failed:
            out.append(Sample("failed_probes", float(failed)))
        return out
