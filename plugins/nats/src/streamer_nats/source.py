"""The ``nats`` source: read a JetStream stream (the one the ``nats`` sink fills) into a
pipeline, so aggregation, WebSocket fan-out or storage can run on other machines.

One durable pull consumer per subject filter, explicit acks. Each fetched batch is decoded
(the wire envelopes back into events), emitted, and acknowledged only after every sink fed
by this source has accepted it (``await emit.accepted()``). A process that dies before that
leaves the messages unacknowledged, and JetStream delivers them again after ``ack_wait``:
delivery into the sinks is at-least-once. Messages that are not wire envelopes are counted
(``malformed``), logged and terminated (never redelivered).

Metrics: ``received`` (messages), ``events``, ``acked``, ``malformed``.
"""

from __future__ import annotations

from typing import Any

import trio

from streamer import Backoff, Context, Emit, Event, FatalError
from streamer_nats.bridge import AsyncioThread
from streamer_nats.config import NatsSourceConfig
from streamer_nats.consumer import Consumer
from streamer_nats.messages import DecodeError, decode_payload


class NatsSource:
    def __init__(self, config: NatsSourceConfig, context: Context) -> None:
        self.config = config
        self.context = context
        self.metrics = context.metrics
        self.logger = context.logger

    def _consumer(self) -> Consumer:
        config = self.config
        return Consumer(
            lambda closing: config.connect_options(self.logger, closing), self.logger,
            stream=config.stream, subjects=config.subjects, durable=config.durable,
            deliver=config.deliver, start_time=config.parsed_start_time(),
            start_sequence=config.start_sequence if config.deliver == "sequence" else None,
            ack_wait=config.ack_wait, max_ack_pending=config.max_ack_pending,
            api_timeout=config.api_timeout)

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        consumer = self._consumer()
        thread = AsyncioThread(on_close=consumer.close)
        async with trio.open_nursery() as nursery:
            await nursery.start(thread.serve)
            await self._connect(thread, consumer)
            async with trio.open_nursery() as readers:
                for i in range(len(config.subjects)):
                    readers.start_soon(self._read, thread, consumer, i, emit)
                task_status.started()
            nursery.cancel_scope.cancel()

    async def _connect(self, thread: AsyncioThread, consumer: Consumer) -> None:
        config = self.config
        backoff = Backoff(0.5, 10.0)
        timeout = config.connect_timeout * len(config.servers) + 1.0
        while True:
            try:
                await thread.call(consumer.connect, timeout)
            except Exception as exc:
                await thread.call(consumer.close)
                if "stream not found" in str(exc).lower():
                    raise FatalError(f"NATS at {config.describe()}: no stream "
                                     f"{config.stream!r}") from exc
                delay = backoff.next()
                self.metrics.inc("connect_failures")
                self.logger.warning("NATS at %s: cannot consume %s (%s: %s); retrying in "
                                    "%.1fs", config.describe(), config.stream,
                                    type(exc).__name__, exc, delay)
                await trio.sleep(delay)
                continue
            self.logger.info("consuming %s from NATS at %s as %s (%s)", config.stream,
                             config.describe(), config.durable, ", ".join(config.subjects))
            return

    async def _read(self, thread: AsyncioThread, consumer: Consumer, i: int,
                    emit: Emit) -> None:
        config = self.config
        metrics = self.metrics
        while True:
            msgs = await thread.call(consumer.fetch, i, config.batch, config.fetch_timeout)
            if not msgs:
                continue
            metrics.inc("received", len(msgs))
            events: list[Event] = []
            good: list[Any] = []
            bad: list[Any] = []
            for msg in msgs:
                try:
                    events.extend(decode_payload(msg.data))
                    good.append(msg)
                except DecodeError as exc:
                    bad.append(msg)
                    self.logger.warning("malformed message on %s: %s", msg.subject, exc)
            if bad:
                metrics.inc("malformed", len(bad))
                await thread.call(consumer.term, bad)
            if events:
                metrics.inc("events", len(events))
                await emit(events)
                await emit.accepted()
            if good:
                await thread.call(consumer.ack, good)
                metrics.inc("acked", len(good))
