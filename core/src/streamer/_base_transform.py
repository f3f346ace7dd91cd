""":class:`BaseTransform`, the convenient base of a transform (exported by ``streamer``).

Apart from :mod:`streamer._api` since its ``run`` needs trio, which the plugin contract does
not import: a plugin's transform module imports it when the pipeline builds the transform.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from streamer._api import Emit
from streamer._events import Event


class BaseTransform:
    """A convenient base: override ``process``; ``run`` only reports readiness."""

    def process(self, batch: Sequence[Event]) -> list[Event]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        await trio.sleep_forever()
