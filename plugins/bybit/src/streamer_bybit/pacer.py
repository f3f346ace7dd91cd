"""Pacing the connection attempts of one source (Bybit limits connections per IP)."""

from __future__ import annotations

import trio


class ConnectPacer:
    """Spaces connection attempts of one source: ``rate`` per second after a ``burst``.

    Bybit allows 500 connections per 5 minutes per IP; a reconnect storm of a large pool
    must not exceed it. Slots are reserved before sleeping, so waiters go in order.
    """

    def __init__(self, rate: float, burst: int = 5) -> None:
        self.interval = 1.0 / rate
        self.burst = burst
        self._tat = -float("inf")

    async def wait(self) -> None:
        now = trio.current_time()
        tat = max(self._tat, now)
        allowed_at = tat - (self.burst - 1) * self.interval
        self._tat = tat + self.interval
        if allowed_at > now:
            await trio.sleep_until(allowed_at)


__all__ = ["ConnectPacer"]
