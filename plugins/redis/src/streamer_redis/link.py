"""How a flush of :class:`~streamer_redis.writer.BufferedWriter` reaches Redis.

A plain TCP or unix-socket server is written on trio's own sockets
(:class:`~streamer_redis.resp.TrioConnection`): one send; the writer reads the replies with
its next flush (:meth:`~streamer_redis.writer.BufferedWriter._collect`).
Anything else (TLS) goes through redis-py's sync client in a worker thread
(:func:`~streamer_redis.worker_thread.run_in_worker_thread`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import redis
import redis.client

from streamer_redis.connection import RedisConnectionConfig, make_client
from streamer_redis.resp import TrioConnection, commands_of, supports
from streamer_redis.worker_thread import run_in_worker_thread

#: Runs in the worker thread before the first write (e.g. the storage sink's startup clean).
Setup = Callable[[redis.Redis], None]


class RedisLink:
    """The redis-py client (made on first use) and, when the server allows, the trio-native
    connection beside it."""

    def __init__(self, config: RedisConnectionConfig) -> None:
        self.config = config
        self._client: redis.Redis | None = None
        self._direct: TrioConnection | None = None
        self._direct_ok: bool | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

    def direct(self) -> TrioConnection | None:
        """The trio-native connection when the server is plain TCP or a unix socket (no
        thread hop per flush), else None: TLS goes through redis-py in a worker thread."""
        if self._direct is None and self._direct_ok is None:
            self._direct_ok = supports(self.client)
            if self._direct_ok:
                self._direct = TrioConnection(self.client)
        return self._direct

    async def execute(self, pipe: redis.client.Pipeline, setup: Setup | None) -> list[Any]:
        """Run ``setup`` (if any, in the worker thread), then the whole pipeline; the
        replies, errors included."""
        direct = self.direct()
        if direct is None:
            return await run_in_worker_thread(partial(self._execute, pipe, setup))
        if setup is not None:
            await run_in_worker_thread(partial(setup, self.client))
        return await direct.execute(commands_of(pipe))

    def _execute(self, pipe: redis.client.Pipeline, setup: Setup | None) -> list[Any]:
        """Worker thread: the pending setup, then the whole pipeline."""
        if setup is not None:
            setup(self.client)
        return pipe.execute(raise_on_error=False)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
            self._direct = None
            self._direct_ok = None
        if self._client is not None:
            self._client.close()
            self._client = None
