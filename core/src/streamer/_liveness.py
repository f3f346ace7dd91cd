"""What a full sink inbox does when no source of the pipeline is live.

``drop_oldest`` exists for live sources: an exchange's WebSocket does not wait, so a sink that
falls behind must lose its oldest batches rather than hold the socket read (and every other
sink). A source that reads stored data (a capture replay, a JetStream stream it acknowledges)
has no deadline; it declares so with ``register(..., live=False)``. When every source of a
pipeline is such a source, dropping only loses data that waiting would have delivered, so a
sink whose table does not choose ``overflow`` blocks instead of taking its type's default
(the console's ``drop_oldest``). An ``overflow`` set in the table is always kept.

A sink with a buffer of its own behind its inbox (Redis, NATS) reads
:attr:`streamer.Context.live_input` (:func:`live_upstream`): when no source feeding it is
live, it waits for room in that buffer instead of dropping its oldest events, so the wait
reaches the blocking inbox and, through it, the source.
"""

from __future__ import annotations

import logging

from streamer._settings import NodeConfig, PipelineConfig

log = logging.getLogger("streamer.runtime")


def block_when_offline(config: PipelineConfig) -> list[str]:
    """Make every sink of ``config`` that did not choose its ``overflow`` block when no
    source is live; return the names of the sinks changed (and log them)."""
    if not config.sources or any(node.spec.live for node in config.sources):
        return []
    changed = [node for node in config.sinks
               if not node.overflow_chosen and node.overflow != "block"]
    for node in changed:
        node.overflow = "block"
    if changed:
        log.info("no live source, only stored data (%s): sink(s) %s wait when full instead "
                 "of dropping (their tables do not set overflow)",
                 ", ".join(f"{node.name}: {node.type}" for node in config.sources),
                 ", ".join(node.name for node in changed))
    return [node.name for node in changed]


def live_upstream(config: PipelineConfig, node: NodeConfig) -> bool:
    """Whether a live source feeds ``node``, directly or through transforms (for a source:
    whether it is live itself). A node no source reaches is not fed live data."""
    if node.kind == "source":
        return node.spec.live
    by_name = {n.name: n for n in config.nodes()}
    seen: set[str] = set()
    pending = list(node.inputs)
    while pending:
        name = pending.pop()
        upstream = by_name.get(name)
        if upstream is None or name in seen:
            continue
        seen.add(name)
        if upstream.kind == "source":
            if upstream.spec.live:
                return True
        else:
            pending.extend(upstream.inputs)
    return False
