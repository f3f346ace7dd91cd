"""The asyncio half of the ``nats`` sink: connect, create or check the stream, publish.

Runs on the loop of :class:`~streamer_nats.bridge.AsyncioThread`. :meth:`Publisher.publish`
takes a chunk of events (the sink keeps at most ``max_in_flight`` unacknowledged over all the
chunks in flight), encodes each into its own message with its ``Nats-Msg-Id``, publishes them with a
reply subject each and waits up to ``ack_timeout`` for the acks. It returns what became of
each event: stored, duplicate (the server already held that id), or to be retried (no ack in
time, an error reply such as "no responders" while a cluster elects a leader, a broken
connection).
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
from streamer_nats.connection import connect_within
from streamer_nats.messages import msg_id_of, payload_of, subject_of

_PENDING, _STORED, _DUPLICATE, _ERROR = 0, 1, 2, 3


@attrs.define
class _Chunk:
    """The acks of one :meth:`Publisher.publish` call."""

    states: bytearray
    left: int
    error: str
    all_acked: asyncio.Future[None]


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
        # Our subjects are made of sanitised tokens (messages.token): skip nats-py's three
        # regex checks per message.
        self._options = {**options(lambda: self.closing), "skip_subject_validation": True}
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
        self._ack_prefix = ""
        self._ack_prefix_len = 0
        self._next_chunk = 0
        self._chunks: dict[int, _Chunk] = {}
        self._send_lock = asyncio.Lock()

    async def connect(self, timeout: float) -> None:
        """Connect (within ``timeout``: with endless reconnects nats-py would keep trying
        the first connection forever) and create or check the stream."""
        if self.nc is None or self.nc.is_closed:
            self.nc = await connect_within(self._options, timeout)
            self.js = self.nc.jetstream(timeout=self.api_timeout)
            await self._subscribe_acks()
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

    async def _subscribe_acks(self) -> None:
        """One wildcard subscription receives every ack: ``<inbox>.<chunk>.<position>``."""
        self._ack_prefix = self.nc.new_inbox() + "."
        self._ack_prefix_len = len(self._ack_prefix)
        await self.nc.subscribe(self._ack_prefix + "*.*", cb=self._on_ack,
                                pending_msgs_limit=4 * self.max_in_flight,
                                pending_bytes_limit=-1)

    async def _on_ack(self, msg: Any) -> None:
        chunk_id, _, position = msg.subject[self._ack_prefix_len:].partition(".")
        chunk = self._chunks.get(int(chunk_id))
        if chunk is None:
            return  # a late ack of a chunk already given up (and retried)
        i = int(position)
        states = chunk.states
        if i >= len(states) or states[i] != _PENDING:
            return
        data = msg.data
        if data.startswith(b'{"stream"') and b'"error"' not in data:
            states[i] = _DUPLICATE if b'"duplicate"' in data else _STORED
        else:
            states[i] = _ERROR
            if not chunk.error:
                status = (msg.headers or {}).get("Status", "")
                chunk.error = (data.decode(errors="replace")[:200] if data
                               else f"status {status or '?'} (no responders: no stream leader)")
        chunk.left -= 1
        if chunk.left == 0 and not chunk.all_acked.done():
            chunk.all_acked.set_result(None)

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        """Publish ``events`` (the caller bounds what is in flight), each with its
        ``Nats-Msg-Id``, and wait up to ``ack_timeout`` for their acks.

        Several calls may run at once (chunks pipelined: a chunk does not wait for the acks
        of the previous one); a lock keeps their messages in call order on the wire.

        nats-py's ``publish_async`` costs ~55 us of CPU per message here (a future, a
        semaphore, a task per ``wait_for``, a dataclass per ack); plain ``nc.publish`` with a
        reply subject per message and one wildcard subscription for the acks costs ~20 us
        (docs/plugins/nats.md).
        """
        result = PublishResult()
        n = len(events)
        self._next_chunk += 1
        chunk_id = self._next_chunk
        chunk = _Chunk(bytearray(n), n, "", asyncio.get_running_loop().create_future())
        self._chunks[chunk_id] = chunk
        reply = f"{self._ack_prefix}{chunk_id}."
        publish = self.nc.publish
        prefix = self.prefix
        sent = 0
        try:
            async with self._send_lock:
                try:
                    for i, event in enumerate(events):
                        await publish(subject_of(prefix, event), payload_of(event),
                                      reply=f"{reply}{i}",
                                      headers={"Nats-Msg-Id": msg_id_of(event)})
                        sent += 1
                except (nats.errors.Error, OSError) as exc:  # closed, reconnect buffer full
                    result.error = f"{type(exc).__name__}: {exc}"
            states = chunk.states
            for i in range(sent, n):
                states[i] = _ERROR
            chunk.left -= n - sent
            if sent and chunk.left > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(chunk.all_acked), self.ack_timeout)
                except asyncio.TimeoutError:
                    result.error = result.error or f"no ack within {self.ack_timeout:g}s"
        finally:
            del self._chunks[chunk_id]
        for i, state in enumerate(chunk.states):
            if state == _STORED:
                result.stored += 1
            elif state == _DUPLICATE:
                result.duplicates += 1
            else:
                result.retry.append(i)
        if result.retry and not result.error:
            result.error = chunk.error
        return result

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout=2.0)
            except (asyncio.TimeoutError, nats.errors.Error, OSError):
                pass
        self.nc = None
