"""The sink's stored history (:class:`streamer.history.StoredHistory`): the trades of a time
range, summed by the database, answered only when ``trade_coverage`` says every one of them
is stored (:mod:`streamer_postgres.coverage`).

A range ``[start, until)`` is answered when the segments of the symbol, joined, reach from
``start`` to ``until`` without a hole. When they reach ``start`` but stop short of
``until`` in a segment that is still open and was extended within :data:`LIVE_WITHIN_S`
(another writer, a replica, is storing the same stream right now and will reach ``until``
with its next batch), the question waits for it, up to ``history_wait`` seconds, asking
again every :data:`POLL_S`. Otherwise the answer is ``None`` at once: the caller asks the
source's history instead. All the ranges of a question (a symbol's first candles) cost one
query of the coverage (per poll) and one of the trades, summed per range by the database.

One connection of its own (not the writer's), opened on first use, one question at a time,
in a worker thread; a statement taking longer than :data:`STATEMENT_TIMEOUT_MS` is ended by
the server. Counters on the sink: ``history_answers``, ``history_unknown``,
``history_polls`` (waits for a live segment), ``history_failures``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from streamer import Metrics
from streamer.history import HistoryError, TradeSummary
from streamer_postgres.config import PostgresSinkConfig

T = TypeVar("T")

#: How often a question waiting for a live segment asks again (s).
POLL_S = 0.1
#: A segment extended this recently (by the database's clock) counts as being written now.
LIVE_WITHIN_S = 30
#: The server ends a history statement that runs longer (a day of trades is summed in well
#: under that with the ``trades_symbol_ts`` index).
STATEMENT_TIMEOUT_MS = 10_000

_MS = "(timestamptz 'epoch' + {} * interval '1 millisecond')"
_EPOCH_MS = "(extract(epoch FROM {}) * 1000)::bigint"


def covered(rows: list[tuple[int, int, bool]], start: int, until: int) -> tuple[bool, bool]:
    """Whether the segments ``rows`` ((from, to, live), ordered by from) cover
    ``[start, until)``, and, if not, whether the stretch they cover from ``start`` ends in
    a live one (worth waiting for)."""
    reach, live = start, False
    for begin, end, is_live in rows:
        if begin > reach:
            break  # a hole
        if end > reach:
            reach, live = end, is_live
        elif end == reach:
            live = live or is_live
    if reach >= until:
        return True, False
    return False, reach > start and live


class _Connection:
    """A connection and whether its question was given up (the thread closes it then)."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.abandoned = False

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: nothing to save
                pass


class StoredTrades:
    """What the ``postgres`` sink offers as its ``stored_history``."""

    def __init__(self, config: PostgresSinkConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self._current = _Connection()
        self._lock = trio.Lock()
        s = config.schema
        key = ("exchange = %(exchange)s AND channel = %(channel)s AND symbol = %(symbol)s")
        self._coverage_sql = (
            f"SELECT {_EPOCH_MS.format('from_ts')}, {_EPOCH_MS.format('to_ts')}, "
            f"open AND updated_at > now() - interval '{LIVE_WITHIN_S} seconds' "
            f"FROM {s}.trade_coverage WHERE {key} AND to_ts >= {_MS.format('%(start)s')} "
            f"AND from_ts <= {_MS.format('%(until)s')} ORDER BY from_ts")
        # One row per range (r.a, r.b): its trades summed, and its first and last price.
        where = f"{key} AND ts >= {_MS.format('r.a')} AND ts < {_MS.format('r.b')}"
        self._summary_sql = (
            "SELECT r.a, r.b, t.* FROM unnest(%(starts)s::bigint[], %(untils)s::bigint[]) "
            "AS r(a, b) CROSS JOIN LATERAL (SELECT count(*), min(price)::text, "
            "max(price)::text, coalesce(sum(size), 0)::text, "
            "coalesce(sum(price * size), 0)::text, "
            f"(SELECT price::text FROM {s}.trades WHERE {where} ORDER BY ts, ctid LIMIT 1), "
            f"(SELECT price::text FROM {s}.trades WHERE {where} "
            "ORDER BY ts DESC, ctid DESC LIMIT 1) "
            f"FROM {s}.trades WHERE {where}) AS t")

    async def trades_summaries(
        self, channel: str, symbol: str, ranges: Sequence[tuple[int, int]]
    ) -> list[TradeSummary | None]:
        if not ranges:
            return []
        key = {"exchange": self.config.exchange, "channel": channel, "symbol": symbol}
        window = {**key, "start": min(r[0] for r in ranges), "until": max(r[1] for r in ranges)}
        give_up = trio.current_time() + self.config.history_wait
        while True:
            rows = await self._call(lambda conn: conn.execute(self._coverage_sql,
                                                              window).fetchall())
            judged = [covered(rows, start, until) for start, until in ranges]
            if all(whole or not live for whole, live in judged) \
                    or trio.current_time() + POLL_S > give_up:
                break
            self.metrics.inc("history_polls")
            await trio.sleep(POLL_S)
        whole = [r for r, (is_whole, _) in zip(ranges, judged, strict=True) if is_whole]
        sums: dict[tuple[int, int], TradeSummary] = {}
        if whole:
            params = {**key, "starts": [r[0] for r in whole], "untils": [r[1] for r in whole]}
            for start, until, n, low, high, volume, turnover, first, last in await self._call(
                    lambda conn: conn.execute(self._summary_sql, params).fetchall()):
                sums[(start, until)] = TradeSummary(start, until, n, first, high, low, last,
                                                    volume, turnover)
        self.metrics.inc("history_answers", len(whole))
        self.metrics.inc("history_unknown", len(ranges) - len(whole))
        return [sums.get(r) for r in ranges]

    async def _call(self, fn: Callable[[Any], T]) -> T:
        """``fn(connection)`` in a worker thread, one at a time; database trouble becomes
        :class:`HistoryError`."""
        async with self._lock:
            current = self._current
            try:
                return await trio.to_thread.run_sync(self._run, current, fn,
                                                     abandon_on_cancel=True)
            except trio.Cancelled:
                current.abandoned = True  # still running: it closes the connection itself
                self._current = _Connection()
                raise
            except (psycopg.Error, OSError) as exc:
                self.metrics.inc("history_failures")
                first_line = (str(exc).splitlines() or [""])[0]
                raise HistoryError(f"PostgreSQL at {self.config.describe()}: "
                                   f"{type(exc).__name__}: {first_line}") from None

    def _run(self, current: _Connection, fn: Callable[[Any], T]) -> T:
        try:
            if current.conn is None:
                current.conn = psycopg.connect(
                    self.config.dsn, password=os.environ.get(self.config.password_env) or None,
                    connect_timeout=max(1, round(self.config.connect_timeout)),
                    application_name="streamer history", autocommit=True,
                    options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
            return fn(current.conn)
        except BaseException:
            current.close()
            raise
        finally:
            if current.abandoned:
                current.close()

    def close(self) -> None:
        """Close the connection (the next question opens one)."""
        self._current.close()
