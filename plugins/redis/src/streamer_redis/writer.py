"""The buffered Redis writer behind both sinks: one pipeline per flush, never per event.

Every flush is one pipeline (``transaction=False``) of all the commands for up to
``MAX_CHUNK`` events, built with redis-py's command methods. A plain TCP or unix-socket server
is written on trio's own sockets (:mod:`streamer_redis.resp`): one send and one wake-up for
the replies. redis-py's asyncio client does not run under trio, so anything else (TLS) goes
through the sync client in a worker thread (:func:`run_in_worker_thread`), a hop of ~130 us
and two more wake-ups per flush (docs/background.md, "Redis from trio": 3.8k events/s with a
hop per event, 62k with batches of 100). The connection check at start and the storage
sink's setup always use redis-py in a thread (once).

The sink's task only appends to the buffer (:meth:`BufferedWriter.add`, never awaits); the
writer runs as its own task. While Redis is down the writer backs off and retries, the sink
keeps draining its inbox into the bounded buffer, and beyond ``max_buffer`` events the oldest
are dropped and counted, so a Redis outage never stalls the source or the other sinks. When
Redis is back the buffer is written in order.

Delivery is at-least-once: if a connection dies after Redis ran part of a pipeline, the retry
repeats those commands (a message published twice, a history entry pushed twice).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Any, TypeVar

import redis
import redis.client
import trio
import trio.lowlevel

from streamer import Backoff, Context, Event, FatalError, Inbox
from streamer_redis.connection import RedisConnectionConfig, make_client
from streamer_redis.resp import TrioConnection, commands_of, supports

#: Events per pipeline at most: bounds the size of one pipeline (and one pub/sub message)
#: when a long outage ends with a full buffer.
MAX_CHUNK = 10_000
#: Seconds between two "dropped N events" log lines.
DROP_LOG_INTERVAL = 10.0
#: While Redis stays down, a warning every this many failed attempts (the first always).
FAILURE_LOG_EVERY = 10

#: Adds the commands for ``events`` to a pipeline. Runs on the trio thread (no I/O).
Builder = Callable[[redis.client.Pipeline, list[Event]], None]
#: Runs in the worker thread before the first write (e.g. the storage sink's startup clean).
Setup = Callable[[redis.Redis], None]

T = TypeVar("T")


async def run_in_worker_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in one of trio's cached worker threads and return its result (or raise).

    The hop of every flush. ``trio.to_thread.run_sync`` adds a capacity limiter, a context
    copy and checkpoints around the same hand-off; at ~100 flushes/s they were ~40% of the
    hop's CPU (docs/performance.md). Like ``to_thread.run_sync`` (the default),
    it cannot be cancelled while ``fn`` runs: a pipeline half-sent must come back first.
    """
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: Any) -> None:  # in the worker thread: an outcome of fn()
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(fn, deliver, name="streamer-redis-writer")
    value: T = await trio.lowlevel.wait_task_rescheduled(
        lambda _: trio.lowlevel.Abort.FAILED
    )
    return value


#: Failures worth a retry on a new connection (a protocol error too: the reply stream is
#: out of step, the connection is closed, the next write starts afresh).
_TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.InvalidResponse, OSError)
#: Server replies that mean "not now" (failover, loading), worth a retry.
_TRANSIENT_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


class _Transient(Exception):
    """A reply that asks us to retry later."""


def _is_auth_error(exc: BaseException) -> bool:
    if isinstance(exc, redis.AuthenticationError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_AUTH_REPLIES)


class BufferedWriter:
    """A bounded FIFO of events and the task that writes it to Redis."""

    def __init__(
        self,
        config: RedisConnectionConfig,
        context: Context,
        *,
        build: Builder,
        flush_size: int,
        flush_interval: float,
        setup: Setup | None = None,
        max_chunk: int = MAX_CHUNK,
    ) -> None:
        self.config = config
        self.context = context
        self._build = build
        self._setup = setup
        self.flush_size = flush_size
        self.flush_interval = flush_interval
        self.max_chunk = max_chunk
        self._client: redis.Redis | None = None
        self._direct: TrioConnection | None = None
        self._direct_ok: bool | None = None
        self._buffer: deque[Event] = deque()
        #: Absolute index of ``_buffer[0]``: lets a write that raced with drops remove exactly
        #: what it wrote.
        self._head = 0
        self._pending_since = 0.0
        #: trio time of the latest :meth:`add` (the gap between batches predicts the next).
        self._last_add = 0.0
        #: Write without waiting for the window's end (see :meth:`add`).
        self._flush_now = False
        self._closed = False
        self._changed = trio.Event()
        self._drops_unreported = 0
        self._last_drop_log = -DROP_LOG_INTERVAL
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        self.setup_done = setup is None
        #: The first ``serve`` checks Redis (and the credentials) before reporting ready.
        self._probed = False
        #: trio time of the latest write attempt (shows when a flush window closed).
        self.last_write_started: float | None = None
        #: Events written since this writer was created.
        self.written_events = 0
        self._progress = trio.lowlevel.ParkingLot()
        #: Last readiness reported to ``context.health`` (None: not yet).
        self._reported_ready: bool | None = None

    def _report_health(self, ready: bool, reason: str = "") -> None:
        """Tell /readyz whether Redis is reachable: every failure (with its cause), but a
        success only when it changes something (it runs per flush)."""
        if not (ready and self._reported_ready):
            self._reported_ready = ready
            self.context.health.set(self.config.describe(), ready, reason)

    # -- the sink's side -------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, events: list[Event]) -> None:
        """Buffer ``events``; beyond ``max_buffer`` drop the oldest. Never waits."""
        if not events:
            return
        buffer = self._buffer
        was_empty = not buffer
        now = trio.current_time()
        gap = now - self._last_add
        self._last_add = now
        if was_empty:
            self._pending_since = now
        elif now + gap > self._pending_since + self.flush_interval > now:
            # If the next batch comes as far apart as this one did, the window closes before
            # it: write now, with this wake-up, instead of waking again for the window's
            # timer with nothing new to add (the oldest event only waits less).
            self._flush_now = True
        buffer.extend(events)
        excess = len(buffer) - self.config.max_buffer
        if excess > 0:
            for _ in range(excess):
                buffer.popleft()
            self._head += excess
            self.context.metrics.lost("buffer_dropped_events", excess)
            self._drops_unreported += excess
            now = trio.current_time()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL:
                self._report_drops()
        # Wake the writer only when that changes what it waits for: a flush window to open
        # (the buffer was empty) or the size threshold crossed. Waking it per add cost a task
        # switch per batch while its window was open anyway.
        size = len(buffer)
        if was_empty or self._flush_now or size - len(events) < self.flush_size <= size:
            self._changed.set()

    @property
    def closed_and_empty(self) -> bool:
        return self._closed and not self._buffer

    def reopen(self) -> None:
        """Accept events again (the sink's ``run`` was restarted)."""
        self._closed = False

    def close(self) -> None:
        """No more events: write what is buffered, then :meth:`run` returns."""
        self._closed = True
        self._changed.set()

    def _report_drops(self) -> None:
        if self._drops_unreported:
            self.context.logger.warning(
                "Redis write buffer full (max_buffer=%d): dropped the %d oldest events "
                "(%d in total)", self.config.max_buffer, self._drops_unreported,
                self.context.metrics["buffer_dropped_events"],
            )
            self._drops_unreported = 0
            self._last_drop_log = trio.current_time()

    async def _wait_changed(self) -> None:
        self._changed = trio.Event()
        await self._changed.wait()

    # -- connecting ------------------------------------------------------------------------

    async def try_connect(self) -> bool:
        """PING (and run the setup) once; False if Redis is unreachable.

        Raises :class:`FatalError` for rejected credentials: retrying cannot fix them.
        """
        def probe() -> None:
            self.client.ping()
            if not self.setup_done and self._setup is not None:
                self._setup(self.client)

        try:
            await trio.to_thread.run_sync(probe)
        except Exception as exc:
            self._raise_if_fatal(exc)
            if not isinstance(exc, _TRANSIENT_ERRORS):
                raise
            self.context.logger.warning(
                "Redis at %s is unreachable (%s: %s); buffering up to %d events until it is "
                "back", self.config.describe(), type(exc).__name__, exc, self.config.max_buffer,
            )
            self._report_health(False, f"unreachable: {type(exc).__name__}: {exc}")
            return False
        self.setup_done = True
        self._report_health(True)
        return True

    def _raise_if_fatal(self, exc: BaseException) -> None:
        if _is_auth_error(exc):
            # The sink ends here (the run stops, or this sink alone is disabled): what it
            # still holds will never be written.
            lost = len(self._buffer)
            if lost:
                self._head += lost
                self._buffer.clear()
                self.context.metrics.lost("lost_on_fatal", lost)
            raise FatalError(
                f"Redis at {self.config.describe()} rejected the credentials ({exc}); the "
                f"password comes from ${self.config.password_env}"
            ) from exc

    async def serve(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The body of a sink's ``run``: connect once (not fatal if Redis is down), then move
        the inbox into the buffer while the writer task flushes it; at shutdown
        (``inbox.get()`` returned ``[]``) let the writer write what it holds and return."""
        self.reopen()
        if not self._probed:
            self._probed = True
            if await self.try_connect():
                self.context.logger.info("connected to Redis at %s", self.config.describe())
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.run)
                task_status.started()
                while events := await inbox.get():
                    self.add(events)
                self.close()
        finally:
            if self.closed_and_empty:
                self.close_client()

    # -- the writer task -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the buffer whenever a flush is due; return once closed and written."""
        task_status.started()
        while True:
            await self._wait_for_flush()
            if not self._buffer:
                if self._closed:
                    return
                continue
            if not self._closed:
                await self._write_chunk()
                continue
            with trio.move_on_after(self.config.shutdown_timeout):
                while self._buffer:
                    await self._write_chunk()
            if self._buffer:
                lost = len(self._buffer)
                self._head += lost
                self._buffer.clear()
                self.context.metrics.lost("lost_at_shutdown", lost)
                self.context.logger.error(
                    "Redis still unreachable at shutdown after %.1fs: %d buffered events lost",
                    self.config.shutdown_timeout, lost,
                )
            self._report_drops()
            return

    async def _wait_for_flush(self) -> None:
        """Until the buffer holds ``flush_size`` events, its oldest waited ``flush_interval``,
        or the writer is closed."""
        while not self._buffer and not self._closed:
            await self._wait_changed()
        if self.flush_interval <= 0:
            return
        with trio.move_on_at(self._pending_since + self.flush_interval):
            while (len(self._buffer) < self.flush_size and not self._closed
                   and not self._flush_now):
                await self._wait_changed()

    async def _write_chunk(self) -> None:
        """Write the oldest ``max_chunk`` events; on a transient failure back off (the caller
        loops, so the retry takes whatever the buffer holds then, in order)."""
        chunk = list(islice(self._buffer, self.max_chunk))
        first = self._head
        started_at = trio.current_time()
        self.last_write_started = started_at
        pipe = self.client.pipeline(transaction=False)
        try:
            self._build(pipe, chunk)
        except Exception as exc:
            # An event that cannot be encoded (or a bug): the buffer must not stay stuck
            # behind it, so this chunk is dropped, counted and logged.
            self._consume(first, len(chunk))
            self.context.metrics.lost("unwritable_events", len(chunk))
            self.context.logger.error(
                "cannot build Redis commands for %d events (%s: %s); dropped them",
                len(chunk), type(exc).__name__, exc, exc_info=exc,
            )
            return
        try:
            direct = self._direct_connection()
            if direct is None:
                replies = await run_in_worker_thread(partial(self._execute, pipe))
            else:
                if not self.setup_done and self._setup is not None:
                    await run_in_worker_thread(partial(self._setup, self.client))
                replies = await direct.execute(commands_of(pipe))
            # A batch that came during the write predicted against the old window; what is
            # left waits for its own.
            self._flush_now = False
            errors = [r for r in replies if isinstance(r, Exception)]
            for error in errors:
                self._raise_if_fatal(error)
                if str(error).startswith(_TRANSIENT_REPLIES):
                    raise _Transient(str(error))
        except (*_TRANSIENT_ERRORS, _Transient) as exc:
            self._raise_if_fatal(exc)
            await self._failed(exc)
            return
        if errors:
            self.context.metrics.inc("command_errors", len(errors))
            self.context.logger.error(
                "Redis refused %d of %d commands; first: %s", len(errors), len(replies), errors[0]
            )
        if self._backoff.attempts:
            self.context.logger.warning(
                "Redis at %s is back after %d failed attempt(s); writing %d buffered events",
                self.config.describe(), self._backoff.attempts, len(self._buffer),
            )
            self._backoff.reset()
            self._report_drops()
        self.setup_done = True
        self._report_health(True)
        self._consume(first, len(chunk))
        if self._buffer and len(chunk) < self.max_chunk:
            # What is left arrived during the write; its flush window starts now.
            self._pending_since = started_at
        self.written_events += len(chunk)
        self.context.metrics.inc("written_events", len(chunk))
        self.context.metrics.inc("flushes")
        self._progress.unpark_all()

    async def wait_written(self, count: int) -> None:
        """Until :attr:`written_events` reaches ``count`` (benchmarks, tests)."""
        while self.written_events < count:
            await self._progress.park()

    def _consume(self, first: int, count: int) -> None:
        """Remove the events ``first .. first+count`` (absolute indexes) from the buffer;
        drops may have removed some of them from the front during the write."""
        buffer = self._buffer
        done = max(0, min(first + count - self._head, len(buffer)))
        if done == len(buffer):
            buffer.clear()  # the usual case, without a popleft per event
        else:
            for _ in range(done):
                buffer.popleft()
        self._head += done

    def _execute(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Worker thread: the pending setup (once), then the whole pipeline."""
        if not self.setup_done and self._setup is not None:
            self._setup(self.client)
        return pipe.execute(raise_on_error=False)

    async def _failed(self, exc: BaseException) -> None:
        attempt = self._backoff.attempts + 1
        delay = self._backoff.next()
        self.context.metrics.inc("write_failures")
        self._report_health(False, f"write failed: {type(exc).__name__}: {exc}")
        if attempt == 1 or attempt % FAILURE_LOG_EVERY == 0:
            self.context.logger.warning(
                "Redis write to %s failed (%s: %s), attempt %d; %d events buffered, "
                "retrying in %.2fs", self.config.describe(), type(exc).__name__, exc, attempt,
                len(self._buffer), delay,
            )
        await trio.sleep(delay)

    def _direct_connection(self) -> TrioConnection | None:
        """The trio-native connection when the server is plain TCP or a unix socket (no
        thread hop per flush), else None: TLS goes through redis-py in a worker thread."""
        if self._direct is None and self._direct_ok is None:
            self._direct_ok = supports(self.client)
            if self._direct_ok:
                self._direct = TrioConnection(self.client)
        return self._direct

    def close_client(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
            self._direct_ok = None
        if self._client is not None:
            self._client.close()
            self._client = None
