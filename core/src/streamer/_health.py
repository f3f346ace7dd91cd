"""Readiness of one pipeline node, as its plugin reports it (``context.health``).

A node is made of parts: a source's connections, a sink's Redis connection or listening
socket. A plugin reports each part in one of two ways:

- push, when the state changes: ``context.health.set("redis", False, "connection refused")``
  and later ``context.health.set("redis", True)``;
- pull, for what changes all the time: ``context.health.add_probe(fn)``, where ``fn()``
  returns :class:`PartState` objects. It is called only when readiness is asked for
  (``/readyz``), so a source's hot path only stores the time of its newest message, which it
  keeps anyway.

A part that gives ``last_data`` (the ``trio.current_time()`` of the newest message) is also
not ready when that is older than ``[streamer] ready_max_data_age``. A node that never reports
anything counts as ready (a plugin that does not implement readiness cannot block it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs


@attrs.frozen
class PartState:
    """The state of one part of a node (``part`` names it, e.g. ``"linear#0"``)."""

    part: str
    ready: bool
    #: Why it is not ready ("connecting", "3 of 20 topics subscribed"); empty when ready.
    reason: str = ""
    #: trio time of the newest data message, for parts that must keep receiving data.
    last_data: float | None = None


HealthProbe = Callable[[], Iterable[PartState]]


class Health:
    """What one node reports about its readiness; read by ``/readyz``."""

    __slots__ = ("_parts", "_probes")

    def __init__(self) -> None:
        self._parts: dict[str, PartState] = {}
        self._probes: list[HealthProbe] = []

    def set(self, part: str, ready: bool, reason: str = "") -> None:
        """Record that ``part`` is (not) ready; ``reason`` says why not."""
        self._parts[part] = PartState(part, ready, "" if ready else reason)

    def add_probe(self, probe: HealthProbe) -> None:
        """Call ``probe()`` whenever readiness is asked for."""
        self._probes.append(probe)

    @property
    def reported(self) -> bool:
        return bool(self._parts or self._probes)

    def states(self) -> list[PartState]:
        out = list(self._parts.values())
        for probe in self._probes:
            try:
                out.extend(probe())
            except Exception as exc:  # a broken probe reports itself as not ready
                out.append(PartState("probe", False, f"{type(exc).__name__}: {exc}"))
        return out

    def problems(self, now: float, max_data_age: float | None) -> list[str]:
        """Why this node is not ready (empty: ready). ``now`` is ``trio.current_time()``."""
        out = []
        for state in self.states():
            if not state.ready:
                out.append(f"{state.part}: {state.reason or 'not ready'}")
            elif max_data_age is not None and state.last_data is not None:
                age = now - state.last_data
                if age > max_data_age:
                    out.append(f"{state.part}: no data for {age:.1f} s "
                               f"(ready_max_data_age = {max_data_age:g})")
        return out
