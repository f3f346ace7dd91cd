"""The ``nats`` sink: every event to JetStream, once, with a deterministic ``Nats-Msg-Id``.

The sink's task only moves its inbox into a bounded buffer (never waits on NATS); a writer
task takes chunks of up to ``max_chunk`` events from it and hands each chunk to the asyncio
thread (:mod:`streamer_nats.bridge`) in one call. Chunks are pipelined (a chunk does not wait
for the acks of the previous one) while at most ``max_in_flight`` events are unacknowledged.
Events whose ack does not come (server restart, leader election, broken connection) go back
to the head of the buffer and are published again with the same ids after a backoff, so
JetStream stores each one once (within the stream's duplicate window). Beyond ``max_buffer``
buffered events the oldest are dropped and counted as ``failed``; unless no source upstream is
live (``context.live_input`` False: a replay, another stream): then the sink waits for room
(:class:`streamer.BufferRoom`), its inbox fills and blocks, and the source waits for NATS.

Metrics: ``published`` (stored), ``duplicates`` (acked as already stored: the other replica
or an earlier attempt was first), ``retried``, ``failed``, ``lost_at_shutdown``.
"""

from __future__ import annotations

from collections import deque

import trio

from streamer import Backoff, BufferRoom, Context, Event, FatalError, Inbox
from streamer_nats.bridge import AsyncioThread
from streamer_nats.config import NatsSinkConfig
from streamer_nats.publisher import Publisher, StreamMismatch

#: Seconds between two "dropped N events" log lines.
DROP_LOG_INTERVAL = 10.0


class NatsSink:
    def __init__(self, config: NatsSinkConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.metrics = context.metrics
        self.logger = context.logger
        self._buffer: deque[Event] = deque()
        #: Behind stored data only, wait for room in the buffer instead of dropping.
        self._waits_for_room = not context.live_input
        self._room = BufferRoom(config.max_buffer)
        self._changed = trio.Event()
        self._closed = False
        self._drops_unreported = 0
        self._last_drop_log = -DROP_LOG_INTERVAL
        self._backoff = Backoff(config.retry_initial, config.retry_max)
        #: Events handed to the asyncio thread and not acknowledged yet.
        self._in_flight = 0
        #: After a chunk with failures, no new chunk before this trio time.
        self._paused_until = 0.0
        #: The writer's current step (a connect attempt, a backoff, a wait); shutdown moves
        #: its deadline so none of them outlasts ``shutdown_timeout``.
        self._writer_scope: trio.CancelScope | None = None
        self._shutdown_deadline = float("inf")

    # -- the sink's side -------------------------------------------------------------------

    def add(self, events: list[Event]) -> None:
        if not self.config.publish_partial_klines:
            events = [e for e in events if not getattr(e, "partial", False)]
        buffer = self._buffer
        buffer.extend(events)
        excess = len(buffer) - self.config.max_buffer
        if excess > 0 and not self._waits_for_room:
            for _ in range(excess):
                buffer.popleft()
            self.metrics.lost("failed", excess)
            self._drops_unreported += excess
            if trio.current_time() - self._last_drop_log >= DROP_LOG_INTERVAL:
                self._report_drops()
        self._changed.set()

    def _report_drops(self) -> None:
        if self._drops_unreported:
            self.logger.warning(
                "NATS publish buffer full (max_buffer=%d): dropped the %d oldest events "
                "(%d failed in total)", self.config.max_buffer, self._drops_unreported,
                self.metrics["failed"])
            self._drops_unreported = 0
            self._last_drop_log = trio.current_time()

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        self._closed = False
        publisher = Publisher(
            lambda closing: config.connect_options(self.logger, closing), self.logger,
            stream=config.stream,
            prefix=config.subject_prefix, replicas=config.replicas,
            duplicate_window_s=config.duplicate_window_s, max_age_s=config.max_age_s,
            storage=config.storage, max_in_flight=config.max_in_flight,
            ack_timeout=config.ack_timeout, api_timeout=config.api_timeout,
            create_stream=config.create_stream)
        thread = AsyncioThread(on_close=publisher.close)
        async with trio.open_nursery() as nursery:
            await nursery.start(thread.serve)
            if await self._connect(thread, publisher):
                self.logger.info("connected to NATS at %s, stream %s", config.describe(),
                                 config.stream)
            async with trio.open_nursery() as writer_nursery:
                writer_nursery.start_soon(self._writer, thread, publisher)
                task_status.started()
                while events := await inbox.get():
                    if self._waits_for_room:
                        await self._room.wait(inbox, self._buffer.__len__, len(events),
                                              lambda: self._changed.set())
                    self.add(events)
                self._closed = True
                self._shutdown_deadline = trio.current_time() + config.shutdown_timeout
                if self._writer_scope is not None:
                    self._writer_scope.deadline = self._shutdown_deadline
                self._changed.set()
            nursery.cancel_scope.cancel()

    async def _connect(self, thread: AsyncioThread, publisher: Publisher) -> bool:
        """One attempt; False (logged) if NATS is unreachable: the writer keeps trying."""
        timeout = self.config.connect_timeout * len(self.config.servers) + 1.0
        try:
            await thread.call(publisher.connect, timeout)
            return True
        except StreamMismatch as exc:
            # The sink ends here: what it still holds will never be published.
            if self._buffer:
                self.metrics.lost("lost_on_fatal", len(self._buffer))
                self._buffer.clear()
            raise FatalError(str(exc)) from exc
        except Exception as exc:
            self.metrics.inc("connect_failures")
            self.logger.warning("NATS at %s unreachable or not ready (%s: %s); buffering up "
                                "to %d events", self.config.describe(), type(exc).__name__,
                                exc, self.config.max_buffer)
            return False

    # -- the writer task -------------------------------------------------------------------

    async def _writer(self, thread: AsyncioThread, publisher: Publisher) -> None:
        """Start a publish task per chunk while fewer than ``max_in_flight`` events are
        unacknowledged: chunks are pipelined, none waits for the acks of the one before."""
        config = self.config
        self._in_flight = 0
        self._paused_until = 0.0
        async with trio.open_nursery() as chunks:
            while True:
                with trio.move_on_at(self._shutdown_deadline) as self._writer_scope:
                    room = config.max_in_flight - self._in_flight
                    if not self._buffer or room <= 0:
                        if self._closed and not self._buffer and not self._in_flight:
                            return
                        self._changed = trio.Event()
                        await self._changed.wait()
                        continue
                    if not publisher.stream_ready and not await self._connect(thread,
                                                                              publisher):
                        await trio.sleep(self._backoff.next())
                        continue
                    if trio.current_time() < self._paused_until:
                        await trio.sleep_until(self._paused_until)
                        continue
                    n = min(len(self._buffer), config.max_chunk, room)
                    chunk = [self._buffer.popleft() for _ in range(n)]
                    self._room.freed()
                    self._in_flight += n
                    chunks.start_soon(self._publish_chunk, thread, publisher, chunk)
                    await trio.lowlevel.checkpoint()
                    continue
                chunks.cancel_scope.cancel()  # shutdown_timeout is over
                break
        lost = len(self._buffer)
        self._buffer.clear()
        self.metrics.lost("lost_at_shutdown", lost)
        self.logger.error("NATS: %d buffered events not acknowledged within %.1fs of "
                          "shutdown; lost", lost, config.shutdown_timeout)

    async def _publish_chunk(self, thread: AsyncioThread, publisher: Publisher,
                             chunk: list[Event]) -> None:
        """Publish ``chunk``; what is not acknowledged goes back to the buffer's head."""
        buffer = self._buffer
        try:
            result = await thread.call(publisher.publish, chunk)
        except BaseException:
            buffer.extendleft(reversed(chunk))
            raise
        finally:
            self._in_flight -= len(chunk)
            self._changed.set()
        metrics = self.metrics
        if result.stored:
            metrics.inc("published", result.stored)
        if result.duplicates:
            metrics.inc("duplicates", result.duplicates)
        if not result.retry:
            self._backoff.reset()
            return
        metrics.inc("retried", len(result.retry))
        buffer.extendleft(reversed([chunk[i] for i in result.retry]))
        self._paused_until = trio.current_time() + self._backoff.next()
        self.logger.warning("NATS: %d of %d events not acknowledged (%s); publishing them "
                            "again with the same ids", len(result.retry), len(chunk),
                            result.error)
