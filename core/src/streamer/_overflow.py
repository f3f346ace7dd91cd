"""What a sink's inbox does when it is full, the ``overflow`` key every sink takes.

Its own module (no trio): the plugin contract (:mod:`streamer._api`) and the configuration
name it, and neither needs the inbox itself (:mod:`streamer._inbox`) to load.
"""

from __future__ import annotations

from typing import Literal

#: ``"block"``: the producer waits for room; ``"drop_oldest"``: the oldest batch is
#: discarded and counted.
Overflow = Literal["block", "drop_oldest"]
