"""Run asyncio code (nats-py) beside trio: one worker thread owns an asyncio event loop.

nats-py is asyncio-only. The sink and source each start one :class:`AsyncioThread` inside
their own ``run``; trio hands it coroutines with :meth:`AsyncioThread.call`, which schedules
them on the loop (``asyncio.run_coroutine_threadsafe``) and wakes the trio task from the
future's done-callback (``TrioToken.run_sync_soon``). No trio thread is parked while a call
is in flight, so a call costs two cross-thread wake-ups (measured in docs/plugins/nats.md),
and the sink hands over whole batches, never single events.

Cancelling the trio side cancels the asyncio task. The loop thread is a daemon thread run
through ``trio.to_thread.run_sync(..., abandon_on_cancel=True)``: a stuck loop can never hold
up SIGTERM or the process exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

#: Seconds ``serve`` waits for ``on_close`` at the end (then abandons the loop thread).
CLOSE_TIMEOUT = 2.5


class AsyncioThread:
    """An asyncio loop in a worker thread, started and stopped by :meth:`serve`."""

    def __init__(self, on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Run on the loop when ``serve`` ends (e.g. close the NATS connection), shielded
        #: from cancellation and bounded by :data:`CLOSE_TIMEOUT`.
        self.on_close = on_close

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Run the loop until cancelled (start with ``nursery.start``)."""
        loop = asyncio.new_event_loop()
        token = trio.lowlevel.current_trio_token()

        def run_loop() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(token.run_sync_soon, task_status.started)
            try:
                loop.run_forever()
            finally:
                try:
                    pending = asyncio.all_tasks(loop)
                    for task in pending:
                        task.cancel()
                    if pending:
                        loop.run_until_complete(
                            asyncio.wait(pending, timeout=1.0))
                finally:
                    loop.close()

        self.loop = loop
        try:
            await trio.to_thread.run_sync(run_loop, abandon_on_cancel=True)
        finally:
            if self.on_close is not None and not loop.is_closed():
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self.call(self.on_close)
                    except Exception:  # closing is best effort
                        pass
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # already closed
                pass
            self.loop = None

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` on the asyncio loop; return (or raise) its result."""
        loop = self.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the asyncio thread is not running")
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        abandoned = False

        async def wrapper() -> T:
            try:
                return await fn(*args)
            except Exception:
                if abandoned:  # nobody will read it: do not let asyncio log it as lost
                    return None  # type: ignore[return-value]
                raise

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(wrapper(), loop)

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:  # pragma: no cover - trio already gone
                pass

        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            abandoned = True
            future.cancel()
            raise
        return future.result()
