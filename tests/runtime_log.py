"""Reading the runtime's ``stats`` and ``final`` log lines (core/src/streamer/_stats.py)."""

from __future__ import annotations


def counters_in(line: str, marker: str) -> dict[str, int]:
    """The ``key=value`` counters after ``marker`` (``"final redis:"``) in ``line``: a source's
    or sink's line has them after ``;`` (the throughput comes first), a transform's alone."""
    rest = line.split(marker, 1)[1]
    if ";" in rest:
        rest = rest.split(";", 1)[1]
    out = {}
    for part in rest.split(","):
        key, equals, value = part.strip().partition("=")
        if equals:  # not the throughput of a line without counters
            out[key] = int(value)
    return out
