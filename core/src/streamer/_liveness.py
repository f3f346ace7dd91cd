"""What a full sink inbox does when no source of the pipeline is live.

``drop_oldest`` exists for live sources: an exchange's WebSocket does not wait, so a sink that
falls behind must lose its oldest batches rather than hold the socket read (and every other
sink). A source that reads stored data (a capture replay, a JetStream stream it acknowledges)
has no deadline; it declares so with ``register(..., live=False)``. When every source of a
pipeline is such a source, dropping only loses data that waiting would have delivered, so a
sink whose table does not choose ``overflow`` blocks instead of taking its type's default
(the console's ``drop_oldest``). An ``overflow`` set in the table is always kept.
"""

from __future__ import annotations

import logging

from streamer._settings import PipelineConfig

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
