"""The ``postgres`` sink: trades, closed klines and tickers, each row stored once.

It notes the sources' stream gaps (:class:`streamer.NotesGaps`) to know which time ranges of
trades it stored whole (:mod:`streamer_postgres.coverage`), and, when it stores trades,
offers them back as ``stored_history`` (:mod:`streamer_postgres.stored`): the core hands
that to the transforms that read the same sources (a first candle's missing trades).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from streamer import Context, Inbox, StreamGap
from streamer_postgres.config import PostgresSinkConfig

if TYPE_CHECKING:
    from streamer_postgres.stored import StoredTrades


class PostgresSink:
    def __init__(self, config: PostgresSinkConfig, context: Context) -> None:
        # psycopg is imported here, when the node is built, not when the plugin registers.
        from streamer_postgres.stored import StoredTrades
        from streamer_postgres.writer import PostgresWriter

        self.config = config
        self.context = context
        self.writer = PostgresWriter(config, context)
        self._stored: StoredTrades | None = None
        if "trades" in config.data_types and config.serve_history:
            # Only then is it a streamer.HasStoredHistory: the attribute is the capability.
            self._stored = self.stored_history = StoredTrades(config, context.metrics)

    def note_gap(self, gap: StreamGap, position: int) -> None:
        self.writer.note_gap(gap, position)

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await self.writer.serve(inbox, task_status=task_status)
        finally:
            if self._stored is not None:
                self._stored.close()
