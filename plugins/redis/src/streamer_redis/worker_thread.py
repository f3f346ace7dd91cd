"""The writer's hop to a worker thread (redis-py's sync client: TLS, the storage setup)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio
import trio.lowlevel

T = TypeVar("T")


async def run_in_worker_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in one of trio's cached worker threads and return its result (or raise).

    The hop of every flush. ``trio.to_thread.run_sync`` adds a capacity limiter, a context
    copy and checkpoints around the same hand-off; at ~100 flushes/s they were ~40% of the
    hop's CPU (docs/performance.md).

    A cancel abandons the thread: this returns at once and its outcome is dropped. The writer
    shields the call (a pipeline half-sent must come back first) until its shutdown deadline,
    so only that deadline abandons one, and nothing uses the client after it.
    """
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    abandoned = False

    def resume(result: Any) -> None:  # on the trio thread
        if not abandoned:
            trio.lowlevel.reschedule(task, result)

    def deliver(result: Any) -> None:  # in the worker thread: an outcome of fn()
        try:
            token.run_sync_soon(resume, result)
        except trio.RunFinishedError:  # abandoned, and the run has ended since
            pass

    def abandon(_: Any) -> trio.lowlevel.Abort:
        nonlocal abandoned
        abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED

    trio.lowlevel.start_thread_soon(fn, deliver, name="streamer-redis-writer")
    value: T = await trio.lowlevel.wait_task_rescheduled(abandon)
    return value
