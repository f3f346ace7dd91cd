"""The buffered Redis writer behind both sinks: one pipeline per flush, never per event.

Every flush is one pipeline (``transaction=False``) of all the commands for up to
``MAX_CHUNK`` events, built with redis-py's command methods and sent by
:class:`~streamer_redis.link.RedisLink`: on trio's own sockets for a plain TCP or unix-socket
server, one non-blocking send, whose replies are read with the next flush (one pipeline in
flight; :meth:`BufferedWriter._collect`), so a steady flow costs the writer one scheduler
step per flush and no wake-up of its own. redis-py's asyncio client does not run under
trio, so anything else (TLS) goes through the sync client in a worker thread, a hop of
~130 us and two more wake-ups per flush (docs/background.md, "Redis from trio": 3.8k events/s with a
hop per event, 62k with batches of 100). The connection check at start and the storage
sink's setup always use redis-py in a thread (once).

Its one entry point is :meth:`BufferedWriter.serve`, the body of a sink's ``run``; what it
holds is the ``buffered_events`` gauge. The sink's task only appends to the buffer (never
awaits); the writer runs as its own task. While Redis is down the writer backs off and
retries, the sink keeps draining its inbox into the bounded buffer, and beyond
``max_buffer`` events the oldest are dropped and counted, so a Redis outage never stalls
a live source or the other sinks. When no source upstream is live (``context.live_input``
False: a replay), the sink waits for room instead (:class:`streamer.BufferRoom`): the inbox
fills, blocks, and the replay waits for Redis; nothing is dropped. When Redis is back the
buffer is written in order.

Shutdown (``inbox.get()`` returned ``[]``) gives the writer ``shutdown_timeout``: the write in
flight, every retry and backoff end by then, shielded or not (a hung server, e.g. a
SIGSTOPped redis-server, answers nothing), and what is left is counted in
``lost_at_shutdown``; so is what the writer holds when the pipeline cuts it off.

Delivery is at-least-once: if a connection dies after Redis ran part of a pipeline, the retry
repeats those commands (a message published twice, a history entry pushed twice).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

import redis
import redis.client
import trio
import trio.lowlevel

from streamer import Backoff, BufferRoom, Context, Event, FatalError, Inbox, Sample
from streamer_redis.connection import RedisConnectionConfig
from streamer_redis.failures import (
    TRANSIENT_ERRORS,
    TRANSIENT_REPLIES,
    Transient,
    is_auth_error,
)
from streamer_redis.link import RedisLink, Setup
from streamer_redis.resp import commands_of

#: Events per pipeline at most: bounds the size of one pipeline (and one pub/sub message)
#: when a long outage ends with a full buffer.
MAX_CHUNK = 10_000
#: Seconds between two "dropped N events" log lines.
DROP_LOG_INTERVAL = 10.0
#: While Redis stays down, a warning every this many failed attempts (the first always).
FAILURE_LOG_EVERY = 10
#: The replies of a pipeline are read with the next write, or this many flush windows after
#: its send if none comes by then (``REPLY_WAIT_MAX`` seconds at most): at a steady rate the
#: next write comes within two windows and reads them with its own wake-up; when writes are
#: rarer (the storage sink's 1 s window) the replies cost a wake-up, as they always did.
REPLY_WAIT = 4
REPLY_WAIT_MAX = 0.05

#: Adds the commands for ``events`` to a pipeline. Runs on the trio thread (no I/O).
Builder = Callable[[redis.client.Pipeline, list[Event]], None]

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
        self.link = RedisLink(config)
        self._buffer: deque[Event] = deque()
        #: Behind stored data only, wait for room in the buffer instead of dropping.
        self._waits_for_room = not context.live_input
        self._room = BufferRoom(config.max_buffer)
        #: Absolute index of ``_buffer[0]``: lets a write that raced with drops remove exactly
        #: what it wrote.
        self._head = 0
        self._pending_since = 0.0
        #: trio time of the latest :meth:`_add` (the gap between batches predicts the next).
        self._last_add = 0.0
        #: Write without waiting for the window's end (see :meth:`_add`).
        self._flush_now = False
        self._closed = False
        #: trio time by which a closed writer has written its buffer or counted it lost
        #: (``shutdown_timeout`` after :meth:`_close`); no scope of the writer, shielded or
        #: not, outlives it.
        self._shutdown_deadline = math.inf
        #: The writer's loop, and the shield of the write in flight: :meth:`_close` moves
        #: their deadlines to the shutdown deadline.
        self._run_scope: trio.CancelScope | None = None
        self._write_scope: trio.CancelScope | None = None
        self._changed = trio.Event()
        #: The writer's wait for a flush (None while it writes or backs off): the sink's
        #: task moves its deadline to the window's end instead of waking it (see _add).
        self._wait_scope: trio.CancelScope | None = None
        #: The pipeline sent and not yet answered (direct connection only): its first
        #: event's absolute index, its events, its commands, when it was sent; the events
        #: of it still in the buffer (drops may take some from the front).
        self._flight: tuple[int, int, int, float] | None = None
        self._in_flight = 0
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
        context.metrics.add_probe(self._samples)

    def _report_health(self, ready: bool, reason: str = "") -> None:
        """Tell /readyz whether Redis is reachable: every failure (with its cause), but a
        success only when it changes something (it runs per flush)."""
        if not (ready and self._reported_ready):
            self._reported_ready = ready
            self.context.health.set(self.config.describe(), ready, reason)

    # -- the sink's side -------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        return self.link.client

    def _samples(self) -> list[Sample]:
        return [Sample("buffered_events", float(len(self._buffer)),
                       help="events waiting in the Redis writer's buffer")]

    def _add(self, events: list[Event]) -> None:
        """Buffer ``events``; beyond ``max_buffer`` drop the oldest, unless the sink waits
        for room (then only a shutdown or a single take can exceed it). Never waits."""
        if not events:
            return
        buffer = self._buffer
        was_empty = len(buffer) == self._in_flight  # nothing waits to be sent
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
        if excess > 0 and not self._waits_for_room:
            for _ in range(excess):
                buffer.popleft()
            self._head += excess
            self._in_flight -= min(excess, self._in_flight)
            self.context.metrics.lost("buffer_dropped_events", excess)
            self._drops_unreported += excess
            now = trio.current_time()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL:
                self._report_drops()
        # Wake the writer only when it must write now: the window ended already (no window),
        # the next batch would come after it, or the size threshold crossed. A window that
        # opens only sets the deadline of the writer's wait (no task switch: the writer
        # wakes when it ends, or earlier for one of those).
        size = len(buffer) - self._in_flight
        if self._flush_now or size - len(events) < self.flush_size <= size:
            self._changed.set()
        elif was_empty:
            scope = self._wait_scope
            if scope is None or self.flush_interval <= 0:
                self._changed.set()
            else:
                scope.deadline = min(scope.deadline, self._pending_since + self.flush_interval)

    def _reopen(self) -> None:
        """Accept events again (the sink's ``run`` was restarted)."""
        self._closed = False
        self._shutdown_deadline = math.inf

    def _close(self) -> None:
        """No more events: write what is buffered within ``shutdown_timeout`` from now (the
        write in flight included), then :meth:`_write_until_closed` counts what is left as lost and
        returns, whatever the server does meanwhile."""
        self._closed = True
        self._shutdown_deadline = trio.current_time() + self.config.shutdown_timeout
        for scope in (self._run_scope, self._write_scope):
            if scope is not None:
                scope.deadline = self._shutdown_deadline
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

    # -- connecting ------------------------------------------------------------------------

    async def _try_connect(self) -> bool:
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
            if not isinstance(exc, TRANSIENT_ERRORS):
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
        if is_auth_error(exc):
            # The sink ends here (the run stops, or this sink alone is disabled): what it
            # still holds will never be written.
            lost = len(self._buffer)
            self._flight, self._in_flight = None, 0
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
        """The writer's one entry point, the body of a sink's ``run``: connect once (not
        fatal if Redis is down), then move the inbox into the buffer while the writer task
        flushes it; at shutdown (``inbox.get()`` returned ``[]``) let the writer write what it
        holds and return. A restarted ``run`` calls it again."""
        self._reopen()
        if not self._probed:
            self._probed = True
            if await self._try_connect():
                self.context.logger.info("connected to Redis at %s", self.config.describe())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_until_closed)
                task_status.started()
                while events := await inbox.get():
                    if self._waits_for_room:
                        await self._room.wait(inbox, self._buffer.__len__, len(events),
                                              lambda: self._changed.set())
                    self._add(events)
                self._close()
        finally:
            if self._closed and not self._buffer:
                self.link.close()

    # -- the writer task -------------------------------------------------------------------

    async def _write_until_closed(self) -> None:
        """Write the buffer whenever a flush is due; return once closed and written, or at
        the shutdown deadline with what is left counted in ``lost_at_shutdown``."""
        try:
            with trio.CancelScope(deadline=self._shutdown_deadline) as self._run_scope:
                # The time test too: a write cut off by the deadline returns inside its
                # shield, where the run scope's cancel was never delivered.
                while ((self._buffer or not self._closed)
                       and trio.current_time() < self._shutdown_deadline):
                    await self._wait_for_flush()
                    if self._flight is not None:
                        # The replies of the pipeline before, normally there already: read
                        # without a wake-up of their own, before the next pipeline goes.
                        await self._collect()
                    elif len(self._buffer) > self._in_flight:
                        await self._write_chunk()
        finally:
            self._run_scope = None
            if self._closed:
                # Also when the pipeline cut the writer off: what it held is lost, counted.
                self._count_lost_at_shutdown()

    def _count_lost_at_shutdown(self) -> None:
        lost = len(self._buffer)
        self._flight, self._in_flight = None, 0
        if lost:
            self._head += lost
            self._buffer.clear()
            self.context.metrics.lost("lost_at_shutdown", lost)
            self.context.logger.error(
                "Redis at %s did not take the buffer within shutdown_timeout (%.1fs): %d "
                "buffered events lost", self.config.describe(), self.config.shutdown_timeout,
                lost,
            )
        self._report_drops()

    async def _wait_for_flush(self) -> None:
        """Until a write is due (the unsent events number ``flush_size``, the oldest of them
        waited ``flush_interval``, the next batch would come after that, the sink waits for
        room: :class:`streamer.BufferRoom`), the replies in flight are to be read (a write
        is due, or ``REPLY_WAIT`` flush windows passed since the send), or the writer is
        closed."""
        room = self._room
        while not self._closed:
            if room.waiting and self._buffer:
                return  # (a replay holds trio's clock still meanwhile: no deadline ends)
            unsent = len(self._buffer) - self._in_flight
            due = math.inf
            if unsent > 0:
                if self.flush_interval <= 0 or unsent >= self.flush_size or self._flush_now:
                    return
                due = self._pending_since + self.flush_interval
            if self._flight is not None:
                due = min(due, self._flight[3] + self._reply_wait)
            if trio.current_time() >= due:
                return
            with trio.CancelScope(deadline=due) as self._wait_scope:
                self._changed = trio.Event()
                await self._changed.wait()
            self._wait_scope = None

    @property
    def _reply_wait(self) -> float:
        """Seconds after a send by which its replies are read even if no write comes: past
        the next flush at a steady rate (which reads them anyway), soon enough for
        ``written_events``, the health and a dead connection to be known."""
        return min(REPLY_WAIT * self.flush_interval, REPLY_WAIT_MAX)

    async def _write_chunk(self) -> None:
        """Write the oldest ``max_chunk`` events; on a transient failure back off (the caller
        loops, so the retry takes whatever the buffer holds then, in order). Over the direct
        connection the pipeline is only sent: :meth:`_collect` reads its replies later."""
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
        direct = self.link.direct() if self.setup_done else None
        if direct is not None:
            commands = commands_of(pipe)
            try:
                with trio.CancelScope(shield=True, deadline=self._shutdown_deadline) as scope:
                    self._write_scope = scope
                    try:
                        await direct.send(commands)
                    finally:
                        self._write_scope = None
            except TRANSIENT_ERRORS as exc:
                self._raise_if_fatal(exc)
                await self._failed(exc)
                return
            if scope.cancelled_caught:
                return  # the shutdown deadline cut the write off; the loop counts what is left
            # A batch that came during the write predicted against the old window.
            self._flush_now = False
            self._flight = (first, len(chunk), len(commands), started_at)
            self._in_flight = len(chunk)
            return
        try:
            replies = await self._send(pipe)
            if replies is None:
                return  # the shutdown deadline cut the write off; the loop counts what is left
            # A batch that came during the write predicted against the old window; what is
            # left waits for its own.
            self._flush_now = False
            if self._written(first, len(chunk), replies) and len(chunk) < self.max_chunk:
                # What is left arrived during the write; its flush window starts now.
                self._pending_since = started_at
        except (*TRANSIENT_ERRORS, Transient) as exc:
            self._raise_if_fatal(exc)
            await self._failed(exc)

    async def _collect(self) -> None:
        """Read the replies of the pipeline in flight (by ``socket_timeout`` after its send,
        shielded up to the shutdown deadline like a write) and account for its events; on a
        transient failure back off (its events are still buffered: the retry sends them
        again)."""
        assert self._flight is not None
        first, count, commands, sent_at = self._flight
        direct = self.link.direct()
        try:
            if direct is None:
                raise redis.ConnectionError("Redis connection closed")
            with trio.CancelScope(shield=True, deadline=self._shutdown_deadline) as scope:
                self._write_scope = scope
                try:
                    replies = await direct.receive(
                        commands, sent_at + self.config.socket_timeout)
                finally:
                    self._write_scope = None
            if scope.cancelled_caught:
                return  # cut off by the shutdown deadline: its events are counted lost
            self._flight = None
            self._in_flight = 0
            self._written(first, count, replies)
        except (*TRANSIENT_ERRORS, Transient) as exc:
            self._flight = None
            self._in_flight = 0
            self._raise_if_fatal(exc)
            await self._failed(exc)

    def _written(self, first: int, count: int, replies: list[Any]) -> bool:
        """Account for a pipeline's ``replies``: raises :class:`Transient` for a reply that
        means "retry"; else its events leave the buffer (True)."""
        errors = [r for r in replies if isinstance(r, Exception)]
        for error in errors:
            self._raise_if_fatal(error)
            if str(error).startswith(TRANSIENT_REPLIES):
                raise Transient(str(error))
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
        self._consume(first, count)
        self.written_events += count
        self.context.metrics.inc("written_events", count)
        self.context.metrics.inc("flushes")
        self._progress.unpark_all()
        return True

    async def wait_written(self, count: int) -> None:
        """Until :attr:`written_events` reaches ``count`` (bench/bench_redis.py)."""
        while self.written_events < count:
            await self._progress.park()

    async def _send(self, pipe: redis.client.Pipeline) -> list[Any] | None:
        """The pipeline's replies; None if the shutdown deadline came first. Shielded until
        that deadline: a cancel from outside (a restart) does not cut a write half-sent, it
        comes back or fails within ``socket_timeout``."""
        replies: list[Any] | None = None
        with trio.CancelScope(shield=True, deadline=self._shutdown_deadline) as scope:
            self._write_scope = scope
            try:
                replies = await self.link.execute(
                    pipe, None if self.setup_done else self._setup)
            finally:
                self._write_scope = None
        return replies

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
        self._room.freed()

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
