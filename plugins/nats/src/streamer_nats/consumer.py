"""The asyncio half of the ``nats`` source: a durable pull consumer per subject filter.

Runs on the loop of :class:`~streamer_nats.bridge.AsyncioThread`. :meth:`Consumer.fetch`
returns up to ``batch`` messages (waiting at most ``fetch_timeout``); :meth:`Consumer.ack`
acknowledges them once the trio side says every sink has accepted their events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from streamer_nats.connection import connect_within

_DELIVER = {
    "new": DeliverPolicy.NEW,
    "all": DeliverPolicy.ALL,
    "last": DeliverPolicy.LAST,
    "last_per_subject": DeliverPolicy.LAST_PER_SUBJECT,
    "time": DeliverPolicy.BY_START_TIME,
    "sequence": DeliverPolicy.BY_START_SEQUENCE,
}


class Consumer:
    def __init__(self, options: Callable[[Callable[[], bool]], dict[str, Any]],
                 logger: logging.Logger, *, stream: str, subjects: list[str], durable: str,
                 deliver: str, start_time: datetime | None, start_sequence: int | None,
                 ack_wait: float, max_ack_pending: int, api_timeout: float) -> None:
        self._options = options(lambda: self.closing)
        self.closing = False
        self.logger = logger
        self.stream = stream
        self.subjects = subjects
        self.durable = durable
        self.deliver = deliver
        self.start_time = start_time
        self.start_sequence = start_sequence
        self.ack_wait = ack_wait
        self.max_ack_pending = max_ack_pending
        self.api_timeout = api_timeout
        self.nc: Any = None
        self.subs: list[Any] = []

    def durable_name(self, i: int) -> str:
        return self.durable if len(self.subjects) == 1 else f"{self.durable}-{i + 1}"

    async def connect(self, timeout: float) -> None:
        self.closing = False
        self.nc = await connect_within(self._options, timeout)
        js = self.nc.jetstream(timeout=self.api_timeout)
        self.subs = []
        for i, subject in enumerate(self.subjects):
            config = ConsumerConfig(
                durable_name=self.durable_name(i), ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=_DELIVER[self.deliver], ack_wait=self.ack_wait,
                max_ack_pending=self.max_ack_pending, filter_subject=subject,
                opt_start_time=self.start_time,
                opt_start_seq=self.start_sequence,
            )
            sub = await js.pull_subscribe(subject, durable=self.durable_name(i),
                                          stream=self.stream, config=config)
            self.subs.append(sub)

    async def fetch(self, i: int, batch: int, timeout: float) -> list[Any]:
        try:
            return list(await self.subs[i].fetch(batch=batch, timeout=timeout))
        except nats.errors.TimeoutError:
            return []

    async def ack(self, msgs: list[Any]) -> None:
        for msg in msgs:
            await msg.ack()

    async def term(self, msgs: list[Any]) -> None:
        """Never redeliver these (they cannot be decoded)."""
        for msg in msgs:
            await msg.term()

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout=2.0)
            except (asyncio.TimeoutError, nats.errors.Error, OSError):
                pass
        self.nc = None
