"""The buffered PostgreSQL writer: one transaction per batch, in a worker thread.

The sink's task only hands events to :meth:`PostgresWriter.add` (never awaits); the writer
task writes. The queue has three parts, oldest first: the memory buffer (``max_buffer``
rows), the spool files, and ``pending`` (rows bound for the next spool file). New rows go to
the memory buffer while the spool is empty and the buffer has room; otherwise behind
everything else, so the order of arrival is the order of writing. Without ``spool_dir``,
rows beyond ``max_buffer`` are dropped and counted (``buffer_dropped_rows``); with it, rows
that would pass ``spool_max_bytes`` are (``spool_full_rows``).

While the database is away the writer backs off and retries (full jitter, ``reconnect_*``);
a write that takes longer than ``write_timeout`` (a hung server) is abandoned and retried on
a new connection. Whatever was committed before a failure is not stored twice: the INSERT
skips rows already there (:mod:`streamer_postgres.database`).

Shutdown (:meth:`PostgresWriter.close`) gives the writer ``shutdown_timeout``; what it
still holds then goes to the spool (written by the next run) or, without one, is counted
in ``lost_at_shutdown``.

The queue also carries the coverage steps of the trades (:mod:`streamer_postgres.coverage`),
each behind the trades it speaks for; they are no rows in the counters. Stream gaps heard
inline are put in their place among the events first (:mod:`streamer_postgres.gap_notes`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import TypeVar

import msgspec
import psycopg
import trio

from streamer import Backoff, Context, Event, FatalError, Inbox, StreamGap
from streamer_postgres.config import PostgresSinkConfig
from streamer_postgres.coverage import CoverageStep, CoverageTracker, count_events
from streamer_postgres.database import TRANSIENT_ERRORS, Database, is_auth_error
from streamer_postgres.gap_notes import GapNotes
from streamer_postgres.rows import TABLE_OF, Rows, count, kept, rows_of
from streamer_postgres.spool import Spool, SpoolFile

T = TypeVar("T")

#: Rows per transaction at most (bounds one write after a long outage).
MAX_CHUNK = 10_000
#: Rows per spool file.
SPOOL_BATCH = 10_000
#: While the database stays away, a warning every this many failed attempts (the first too).
FAILURE_LOG_EVERY = 10


class _CutOff(Exception):
    """The shutdown deadline ended the write in flight."""


class PostgresWriter:
    def __init__(self, config: PostgresSinkConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.data_types = frozenset(config.data_types)
        self.tables = frozenset(TABLE_OF[t] for t in config.data_types)
        self._buffer: deque[Event | CoverageStep] = deque()
        self._pending: list[Event | CoverageStep] = []
        self.spool = Spool(config.spool_dir, config.spool_max_bytes) if config.spool_dir \
            else None
        self.coverage = CoverageTracker()
        self.coverage.foreign_ok = self.spool is not None and self.spool.inherited_clean
        self._gaps = GapNotes()
        self._inbox: Inbox | None = None
        self._inbox_dropped = 0
        self._served = False
        self._db: Database | None = None
        #: Rows per spool file: never more than the buffer takes back when pending moves in.
        self.spool_batch = min(SPOOL_BATCH, config.max_buffer)
        self._migrated = not config.migrate
        self._backoff = Backoff(config.reconnect_initial, config.reconnect_max)
        self._changed = trio.Event()
        self._pending_since = 0.0
        self._closed = False
        self._shutdown_deadline = math.inf
        self._run_scope: trio.CancelScope | None = None
        self._write_scope: trio.CancelScope | None = None
        self._progress = trio.lowlevel.ParkingLot()
        self._reported_ready: bool | None = None
        #: Rows handed to the database (new or already stored) since this writer was made.
        self.written_rows = 0
        #: Of them, rows the database already had (a retried batch, another replica).
        self.duplicate_rows = 0

    # -- the sink's side -------------------------------------------------------------------

    def add(self, events: list[Event]) -> None:
        """Queue the events this sink keeps, and the coverage steps behind them; never
        waits."""
        rows = kept(events, self.data_types)
        if not rows:
            return
        steps = self.coverage.trades(rows)
        buffer = self._buffer
        was_empty = not buffer
        if not self._pending and not self.spool:
            room = self.config.max_buffer - len(buffer)
            if room > 0:
                buffer.extend(rows[:room])
                rows = rows[room:]
            if was_empty and buffer:
                self._pending_since = trio.current_time()
        if rows and self.spool is None:
            self.context.metrics.lost("buffer_dropped_rows", len(rows))
            self.context.logger.warning(
                "PostgreSQL write buffer full (max_buffer=%d, no spool_dir): dropped %d "
                "rows", self.config.max_buffer, len(rows))
            self.coverage.lost()
            steps = []
        elif rows:
            self._pending.extend(rows)
        self._queue(steps, wake=was_empty or len(buffer) >= self.config.flush_size)

    def _queue(self, steps: list[CoverageStep], *, wake: bool = True) -> None:
        """Queue ``steps`` behind everything queued, spill what pending holds past a file,
        and wake the writer if ``wake`` or anything waits beyond the buffer."""
        buffer = self._buffer
        if steps:
            if self._pending or self.spool:
                self._pending.extend(steps)
            else:
                if not buffer:
                    self._pending_since = trio.current_time()
                buffer.extend(steps)
        while len(self._pending) >= self.spool_batch:
            self._spill(self.spool_batch)
        if wake or self._pending or self.spool:
            self._changed.set()

    def _spill(self, n: int) -> None:
        """Write the first ``n`` items of ``pending`` as the newest spool file (or count
        their rows lost: spool full)."""
        assert self.spool is not None
        pending, self._pending = self._pending[:n], self._pending[n:]
        rows = rows_of(pending)
        if self.spool.append(rows):
            self.context.metrics.inc("spooled_rows", count(rows))
        else:
            self.context.metrics.lost("spool_full_rows", count(rows))
            self.coverage.lost()
            self.context.logger.error(
                "PostgreSQL spool %s full (spool_max_bytes=%d): dropped %d rows",
                self.config.spool_dir, self.config.spool_max_bytes, count(rows))

    def note_gap(self, gap: StreamGap, position: int) -> None:
        """A source's stream gap (:class:`streamer.NotesGaps`): followed now if every event
        before ``position`` is taken, else when the batch that reaches it is."""
        if gap.data_type != "trades":
            return
        inbox = self._inbox
        if inbox is None or position <= inbox.taken_events + inbox.dropped_events:
            self._queue(self.coverage.gap(gap))
        elif not self._gaps.add(gap, position):
            self.coverage.lost()

    def _take(self, events: list[Event], inbox: Inbox) -> None:
        """A batch from the inbox, cut at the gaps it reaches."""
        if inbox.dropped_events != self._inbox_dropped:  # the inbox lost some before these
            self._inbox_dropped = inbox.dropped_events
            self.coverage.lost()
        if not self._gaps:
            self.add(events)
            return
        for part in self._gaps.place(events, inbox.taken_from):
            if isinstance(part, StreamGap):
                self._queue(self.coverage.gap(part))
            else:
                self.add(part)

    def close(self) -> None:
        """No more events: write what is held within ``shutdown_timeout`` from now; every
        coverage segment is closed behind the rest."""
        self._queue(self.coverage.finish())
        self._closed = True
        self._shutdown_deadline = trio.current_time() + self.config.shutdown_timeout
        for scope in (self._run_scope, self._write_scope):
            if scope is not None:
                scope.deadline = min(scope.deadline, self._shutdown_deadline)
        self._changed.set()

    def reopen(self) -> None:
        self._closed = False
        self._shutdown_deadline = math.inf

    @property
    def held_rows(self) -> int:
        """Rows not yet written: memory, pending and spool."""
        return (count_events(self._buffer) + count_events(self._pending)
                + (self.spool.rows if self.spool else 0))

    def _has_work(self) -> bool:
        """Anything queued, coverage steps included."""
        return bool(self._buffer or self._pending or self.spool)

    async def wait_written(self, count: int) -> None:
        """Until :attr:`written_rows` reaches ``count`` (benchmarks, tests)."""
        while self.written_rows < count:
            await self._progress.park()

    # -- health ----------------------------------------------------------------------------

    def _report_health(self, ready: bool, reason: str = "") -> None:
        if not (ready and self._reported_ready):
            self._reported_ready = ready
            self.context.health.set(self.config.describe(), ready, reason)

    # -- serving ---------------------------------------------------------------------------

    async def serve(self, inbox: Inbox, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sink's ``run``: check the database once (not fatal if it is down), then move
        the inbox into the queue while the writer task writes it."""
        self.reopen()
        if self._served:  # restarted by the core: the batch it was handling may be lost
            self.coverage.lost()
        self._served = True
        self._inbox = inbox
        self._inbox_dropped = inbox.dropped_events
        if self._reported_ready is None:
            try:
                await self._call(self._prepare)
                self.context.logger.info("connected to PostgreSQL at %s (schema %s)",
                                         self.config.describe(), self.config.schema)
                self._report_health(True)
            except TRANSIENT_ERRORS as exc:
                self._raise_if_fatal(exc)
                self.context.logger.warning(
                    "PostgreSQL at %s is unreachable (%s: %s); buffering until it is back",
                    self.config.describe(), type(exc).__name__, exc)
                self._report_health(False, f"unreachable: {type(exc).__name__}: {exc}")
            except psycopg.Error as exc:
                self._raise_if_fatal(exc)
                raise self._fatal(exc) from exc
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            task_status.started()
            while events := await inbox.get():
                self._take(events, inbox)
            self.close()

    def _database(self) -> Database:
        if self._db is None:
            self._db = Database(self.config)
        return self._db

    def _prepare(self) -> None:
        """Worker thread: connect, and run the migrations once (``migrate = true``)."""
        db = self._database()
        if not self._migrated:
            result = db.migrate()
            self._migrated = True
            for migration in result.applied:
                self.context.logger.info("schema %s: applied migration %d (%s)",
                                         self.config.schema, migration.version, migration.name)
        else:
            db.ping()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write the queue; return once closed and written, or at the shutdown deadline with
        what is left spooled or counted lost."""
        task_status.started()
        try:
            with trio.CancelScope(deadline=self._shutdown_deadline) as self._run_scope:
                while (self._has_work() or not self._closed) \
                        and trio.current_time() < self._shutdown_deadline:
                    await self._wait_for_flush()
                    await self._write_next()
        finally:
            self._run_scope = None
            if self._closed:
                self._keep_what_is_left()

    async def _wait_for_flush(self) -> None:
        while not self._has_work() and not self._closed:
            await self._wait_changed()
        if not self._buffer or self.config.flush_interval <= 0:
            return
        with trio.move_on_at(self._pending_since + self.config.flush_interval):
            while len(self._buffer) < self.config.flush_size and not self._closed \
                    and not (self.spool or self._pending):
                await self._wait_changed()

    async def _wait_changed(self) -> None:
        self._changed = trio.Event()
        await self._changed.wait()

    async def _write_next(self) -> None:
        """Write the oldest part of the queue: a chunk of the buffer, else the oldest spool
        file, else ``pending`` (moved to the buffer first)."""
        if not self._buffer and not self.spool and self._pending:
            self._buffer.extend(self._pending)
            self._pending = []
            self._pending_since = trio.current_time()
        if self._buffer:
            chunk = list(islice(self._buffer, MAX_CHUNK))
            rows = rows_of(chunk)
            if await self._write(partial(self._write_rows, rows), count(rows), "buffer"):
                for _ in range(len(chunk)):
                    self._buffer.popleft()
                if self._buffer:
                    self._pending_since = trio.current_time()
        elif self.spool:
            spooled = self.spool.oldest()
            assert spooled is not None
            if await self._write(partial(self._write_spooled, spooled), spooled.rows, "spool"):
                self.spool.remove(spooled)
        self._progress.unpark_all()

    def _write_rows(self, rows: Rows) -> int:
        """Worker thread: migrations first if still due, then the rows."""
        if not self._migrated:
            self._prepare()
        return self._database().write(rows, self.coverage.valid)

    def _write_spooled(self, spooled: SpoolFile) -> int:
        return self._write_rows(Spool.read(spooled))

    async def _write(self, fn: Callable[[], int], n: int, where: str) -> bool:
        """Run one write; True when its rows are done with (stored, or dropped and
        counted as unwritable), False to try again (after a backoff)."""
        try:
            inserted = await self._call(fn)
        except _CutOff:
            return False
        except (psycopg.DataError, psycopg.IntegrityError, msgspec.DecodeError) as exc:
            # A row the database refuses (a price that is no number) or a damaged spool
            # file: the queue must not stay stuck behind it.
            self.context.metrics.lost("unwritable_rows", n)
            self.coverage.lost()
            self.context.logger.error("PostgreSQL refused a batch of %d rows from the %s "
                                      "(%s: %s); dropped it", n, where, type(exc).__name__, exc)
            return True
        except TRANSIENT_ERRORS as exc:
            self._raise_if_fatal(exc)
            await self._failed(exc)
            return False
        except psycopg.Error as exc:
            self._raise_if_fatal(exc)
            if isinstance(exc, psycopg.ProgrammingError):
                raise self._fatal(exc) from exc
            await self._failed(exc)
            return False
        if self._backoff.attempts:
            self.context.logger.warning(
                "PostgreSQL at %s is back after %d failed attempt(s); %d rows queued",
                self.config.describe(), self._backoff.attempts, self.held_rows)
            self._backoff.reset()
        self._report_health(True)
        self.written_rows += n
        self.duplicate_rows += n - inserted
        metrics = self.context.metrics
        metrics.inc("written_rows", n)
        metrics.inc("duplicate_rows", n - inserted)
        metrics.inc("flushes")
        return True

    async def _call(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, shielded from outside cancels (a transaction half
        sent comes back first) until ``write_timeout`` or the shutdown deadline: then the
        thread is abandoned with its connection (closed when it returns)."""
        db = self._database()
        deadline = min(trio.current_time() + self.config.write_timeout, self._shutdown_deadline)
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            self._write_scope = scope
            try:
                return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
            finally:
                self._write_scope = None
        db.abandoned = True
        self._db = None
        if trio.current_time() >= self._shutdown_deadline:
            raise _CutOff
        raise TimeoutError(f"no answer within write_timeout ({self.config.write_timeout}s)")

    def _raise_if_fatal(self, exc: BaseException) -> None:
        if is_auth_error(exc):
            raise self._fatal(exc, f"the password comes from ${self.config.password_env}") \
                from exc

    def _fatal(self, exc: BaseException, hint: str = "") -> FatalError:
        """The sink ends: what it holds in memory is lost and counted (the spool stays)."""
        lost = count_events(self._buffer) + count_events(self._pending)
        self.coverage.lost()
        if lost:
            self._buffer.clear()
            self._pending = []
            self.context.metrics.lost("lost_on_fatal", lost)
        if not hint and isinstance(exc, psycopg.errors.UndefinedTable):
            hint = "run `streamer db migrate` or set migrate = true"
        first_line = (str(exc).splitlines() or [""])[0]
        return FatalError(f"PostgreSQL at {self.config.describe()}: {type(exc).__name__}: "
                          f"{first_line}" + (f"; {hint}" if hint else ""))

    async def _failed(self, exc: BaseException) -> None:
        attempt = self._backoff.attempts + 1
        delay = self._backoff.next()
        self.context.metrics.inc("write_failures")
        self._report_health(False, f"write failed: {type(exc).__name__}: {exc}")
        if attempt == 1 or attempt % FAILURE_LOG_EVERY == 0:
            self.context.logger.warning(
                "PostgreSQL write to %s failed (%s: %s), attempt %d; %d rows queued, "
                "retrying in %.2fs", self.config.describe(), type(exc).__name__, exc,
                attempt, self.held_rows, delay)
        await trio.sleep(delay)

    def _keep_what_is_left(self) -> None:
        """At shutdown: the buffer before the spool files, pending after them; without a
        spool (or no room in it) the rows are counted lost."""
        buffer, pending = list(self._buffer), self._pending
        self._buffer.clear()
        self._pending = []
        for items, put in ((buffer, "prepend"), (pending, "append")):
            if not items:
                continue
            rows = rows_of(items)
            n = count(rows)
            if self.spool is not None and getattr(self.spool, put)(rows):
                self.context.metrics.inc("spooled_rows", n)
                if n:
                    self.context.logger.warning(
                        "PostgreSQL at %s did not take %d rows within shutdown_timeout "
                        "(%.1fs): kept in the spool %s for the next run",
                        self.config.describe(), n, self.config.shutdown_timeout,
                        self.config.spool_dir)
                continue
            self.coverage.lost()
            if not n:
                continue  # only coverage steps: no data lost
            self.context.metrics.lost("lost_at_shutdown", n)
            self.context.logger.error(
                "PostgreSQL at %s did not take %d rows within shutdown_timeout (%.1fs): lost",
                self.config.describe(), n, self.config.shutdown_timeout)
        if self.spool:
            if self.coverage.clean and (self.coverage.foreign_ok
                                        or not self.spool.holds_inherited()):
                self.spool.mark_clean()
            self.context.logger.warning("PostgreSQL spool %s holds %d rows for the next run",
                                        self.config.spool_dir, self.spool.rows)
