"""First candles waiting for their history (``first_candle = "backfill"``): the requests
not yet handed out and the candles each request completes, at most one per (channel,
symbol, interval), so at most symbols x intervals."""

from __future__ import annotations

from collections.abc import Iterator

from streamer_aggregate.backfill import BackfillRequest
from streamer_aggregate.candles import Bucket


class WaitingFirstCandles:
    """The first candles whose history was asked for and has not come yet."""

    def __init__(self, deadline_after_ms: int) -> None:
        #: How long (ms) a candle waits once its request is handed out.
        self.deadline_after_ms = deadline_after_ms
        self._requests: list[BackfillRequest] = []
        self._buckets: list[Bucket] = []

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def has_requests(self) -> bool:
        """Requests wait for :meth:`take_requests`."""
        return bool(self._requests)

    def __iter__(self) -> Iterator[Bucket]:
        return iter(self._buckets)

    def add(self, b: Bucket) -> None:
        """``b`` waits (its ``pending`` set) and its history is to be asked for."""
        st = b.state
        assert b.pending is not None
        self._buckets.append(b)
        self._requests.append(BackfillRequest(st.channel, st.symbol, st.ms, start=b.start,
                                              until=b.pending.first_ts))

    def take_requests(self, now_ms: int) -> list[BackfillRequest]:
        """The requests not handed out yet; their candles wait until ``now_ms`` plus
        ``deadline_after_ms``."""
        requests = self._requests
        if requests:
            self._requests = []
            deadline = now_ms + self.deadline_after_ms
            for b in self._buckets:
                if b.pending is not None and b.pending.deadline_ms is None:
                    b.pending.deadline_ms = deadline
        return requests

    def next_deadline(self) -> int | None:
        """When the earliest waiting candle gives up (ms), or ``None``."""
        return min((b.pending.deadline_ms for b in self._buckets
                    if b.pending is not None and b.pending.deadline_ms is not None),
                   default=None)

    def expired(self, now_ms: int) -> list[Bucket]:
        """The candles whose deadline is ``now_ms`` or earlier (still listed)."""
        return [b for b in self._buckets if b.pending is not None
                and b.pending.deadline_ms is not None and b.pending.deadline_ms <= now_ms]

    def find(self, request: BackfillRequest) -> Bucket | None:
        for b in self._buckets:
            st = b.state
            if (b.start == request.start and st.ms == request.interval
                    and st.symbol == request.symbol and st.channel == request.channel):
                return b
        return None

    def remove(self, b: Bucket) -> None:
        self._buckets.remove(b)
