"""The ``postgres`` sink: trades, closed klines and tickers, each row stored once."""

from __future__ import annotations

import trio

from streamer import Context, Inbox
from streamer_postgres.config import PostgresSinkConfig


class PostgresSink:
    def __init__(self, config: PostgresSinkConfig, context: Context) -> None:
        # psycopg is imported here, when the node is built, not when the plugin registers.
        from streamer_postgres.writer import PostgresWriter

        self.config = config
        self.context = context
        self.writer = PostgresWriter(config, context)

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.writer.serve(inbox, task_status=task_status)
