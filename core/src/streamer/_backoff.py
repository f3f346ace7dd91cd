"""Exponential backoff with full jitter, for reconnects and restarts.

Full jitter (a uniform delay between 0 and the exponential cap) spreads the reconnects of many
connections that failed together, instead of having them all retry in lock-step.
"""

from __future__ import annotations

import random


class Backoff:
    """``next()`` returns the next delay in seconds; ``reset()`` after a success."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        *,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def cap(self) -> float:
        """The upper bound of the next delay (before jitter)."""
        return min(self.maximum, self.initial * self.factor**self.attempts)

    def next(self) -> float:
        cap = self.cap()
        self.attempts += 1
        if not self.jitter:
            return cap
        # Never zero: a zero delay after a clean close would hammer the server.
        return max(self.initial / 10, self._rng.uniform(0, cap))

    def reset(self) -> None:
        self.attempts = 0
