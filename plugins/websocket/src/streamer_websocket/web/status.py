"""What the web view's status shows: every node of the pipeline (``context.pipeline``) and the
process, as one JSON-able dict answering a client's ``{"op": "status"}``.

It holds the nodes' counters, gauges, probe samples and readiness (never an option of any
node), and readiness reasons have every URL in them redacted, so no credential a plugin let
slip into a reason reaches a client. Building it costs one ``/metrics`` scrape, so it is
built at most once per :data:`MIN_INTERVAL` whatever the number of clients asking.
"""

from __future__ import annotations

import os
import re
import resource
import sys
import time
from typing import Any

import trio

from streamer import NodeStatus, PipelineView, redact_url

#: Seconds a built status is reused for.
MIN_INTERVAL = 0.5
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def rss_bytes() -> int | None:
    """The process's resident set size now (Linux), else its peak (other POSIX)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def process_status(started: float) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"uptime_s": round(time.monotonic() - started, 3), "rss_bytes": rss_bytes(),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}


def node_status(node: NodeStatus, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": node.name, "kind": node.kind, "type": node.type,
        "counters": dict(node.counters),
        "samples": [{"name": s.name, "value": s.value, "labels": dict(s.labels)}
                    for s in node.samples],
        "parts": [{"part": p.part, "ready": p.ready, "reason": redact_text(p.reason),
                   "last_data_age_s": None if p.last_data is None
                   else round(now - p.last_data, 3)} for p in node.parts],
        "messages": node.messages, "events": node.events, "lost": node.lost,
    }
    if node.inbox_capacity is not None:
        out["inbox"] = {"depth": node.inbox_depth, "capacity": node.inbox_capacity}
    return out


class StatusBoard:
    def __init__(self, pipeline: PipelineView) -> None:
        self._pipeline = pipeline
        self._started = time.monotonic()
        self._built: dict[str, Any] | None = None
        self._built_at = -MIN_INTERVAL

    def status(self) -> dict[str, Any]:
        now = trio.current_time()
        if self._built is None or now - self._built_at >= MIN_INTERVAL:
            self._built = {
                "time_ms": int(time.time() * 1000),
                "process": process_status(self._started),
                "nodes": [node_status(n, now) for n in self._pipeline.nodes()],
            }
            self._built_at = now
        return self._built
