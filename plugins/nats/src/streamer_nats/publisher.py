"""The asyncio half of the ``nats`` sink: connect, create or check the stream, publish.

Runs on the loop of :class:`~streamer_nats.bridge.AsyncioThread`. :meth:`Publisher.publish`
takes a chunk of events, encodes each into its own message with its ``Nats-Msg-Id``, sends
them all with ``js.publish_async`` (at most ``max_in_flight`` unacknowledged at once) and
waits up to ``ack_timeout`` for the acks. It returns what became of each event: stored,
duplicate (the server already held that id), or to be retried (no ack in time, an error
reply such as "no responders" while a cluster elects a leader, a broken connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import nats
import nats.errors
import nats.js.errors
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from streamer import Event
from streamer_nats.messages import msg_id_of, payload_of, subject_of


class StreamMismatch(Exception):
    """The stream exists with subjects that do not cover what this sink publishes."""


@attrs.define
class PublishResult:
    stored: int = 0
    duplicates: int = 0
    #: Positions (in the chunk) of the events to publish again, in order.
    retry: list[int] = attrs.Factory(list)
    #: Why the first retried event failed (for the log).
    error: str = ""


class Publisher:
    def __init__(self, options: Callable[[Callable[[], bool]], dict[str, Any]],
                 logger: logging.Logger, *, stream: str,
                 prefix: str, replicas: int, duplicate_window_s: float, max_age_s: float,
                 storage: str, max_in_flight: int, ack_timeout: float, api_timeout: float,
                 create_stream: bool) -> None:
        self._options = options(lambda: self.closing)
        self.closing = False
        self.logger = logger
        self.stream = stream
        self.prefix = prefix
        self.replicas = replicas
        self.duplicate_window_s = duplicate_window_s
        self.max_age_s = max_age_s
        self.storage = storage
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.api_timeout = api_timeout
        self.create_stream = create_stream
        self.nc: Any = None
        self.js: Any = None
        self.stream_ready = False

    async def connect(self, timeout: float) -> None:
        """Connect (within ``timeout``: with endless reconnects nats-py would keep trying
        the first connection forever) and create or check the stream."""
        if self.nc is None or self.nc.is_closed:
            self.nc = await asyncio.wait_for(nats.connect(**self._options), timeout)
            self.js = self.nc.jetstream(timeout=self.api_timeout,
                                        publish_async_max_pending=self.max_in_flight)
        if not self.stream_ready:
            await self._ensure_stream()
            self.stream_ready = True

    async def _ensure_stream(self) -> None:
        subject = f"{self.prefix}.>"
        try:
            info = await self.js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            if not self.create_stream:
                raise StreamMismatch(f"stream {self.stream!r} does not exist and "
                                     "create_stream = false") from None
            await self.js.add_stream(StreamConfig(
                name=self.stream, subjects=[subject], retention=RetentionPolicy.LIMITS,
                storage=StorageType(self.storage), num_replicas=self.replicas,
                duplicate_window=self.duplicate_window_s, max_age=self.max_age_s or None,
            ))
            self.logger.info("created stream %s (subjects %s, R%d, %s, duplicate window %gs)",
                             self.stream, subject, self.replicas, self.storage,
                             self.duplicate_window_s)
            return
        cfg = info.config
        subjects = list(cfg.subjects or [])
        if subject not in subjects and ">" not in subjects:
            raise StreamMismatch(
                f"stream {self.stream!r} exists with subjects {subjects}, which do not "
                f"include {subject!r}; fix the stream or subject_prefix")
        diffs = []
        if (cfg.num_replicas or 1) != self.replicas:
            diffs.append(f"replicas {cfg.num_replicas} (config {self.replicas})")
        if cfg.duplicate_window is not None and abs(
                cfg.duplicate_window - self.duplicate_window_s) > 1e-3:
            diffs.append(f"duplicate window {cfg.duplicate_window:g}s "
                         f"(config {self.duplicate_window_s:g}s)")
        if diffs:
            self.logger.warning("stream %s exists and differs from the config: %s; using it "
                                "as it is", self.stream, ", ".join(diffs))
        else:
            self.logger.info("stream %s exists and matches the config", self.stream)

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        result = PublishResult()
        js = self.js
        prefix = self.prefix
        futures: list[asyncio.Future[Any] | None] = []
        failed_early: dict[int, str] = {}
        for i, event in enumerate(events):
            try:
                fut = await js.publish_async(
                    subject_of(prefix, event), payload_of(event),
                    wait_stall=self.ack_timeout, headers={"Nats-Msg-Id": msg_id_of(event)})
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                failed_early[i] = f"{type(exc).__name__}: {exc}"
                futures.append(None)
                # A closed or full connection refuses the rest just the same.
                for j in range(i + 1, len(events)):
                    futures.append(None)
                    failed_early[j] = failed_early[i]
                break
            futures.append(fut)
        pending = [f for f in futures if f is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.ack_timeout)
            for f in late:
                f.cancel()
        for i, fut in enumerate(futures):
            if fut is None:
                result.retry.append(i)
                result.error = result.error or failed_early[i]
                continue
            if fut.cancelled():
                result.retry.append(i)
                result.error = result.error or f"no ack within {self.ack_timeout:g}s"
                continue
            err = fut.exception()
            if err is not None:
                result.retry.append(i)
                result.error = result.error or f"{type(err).__name__}: {err}"
                continue
            if fut.result().duplicate:
                result.duplicates += 1
            else:
                result.stored += 1
        return result

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout=2.0)
            except (asyncio.TimeoutError, nats.errors.Error, OSError):
                pass
        self.nc = None
