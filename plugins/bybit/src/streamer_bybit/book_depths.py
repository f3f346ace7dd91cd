"""Bybit's order-book depths per category and how often each pushes (V5 public WebSocket,
``orderbook.{depth}.{symbol}``), and how long a book may stay silent before it is stale."""

from __future__ import annotations

from typing import Final

#: The depths each category serves (500 no longer exists).
DEPTHS: Final[dict[str, tuple[int, ...]]] = {
    "linear": (1, 50, 200, 1000),
    "inverse": (1, 50, 200, 1000),
    "spot": (1, 50, 200, 1000),
    "option": (25, 100),
}

#: Push interval in ms per depth; spot pushes depth 200 every 200 ms (not 100).
_PUSH_MS: Final[dict[int, int]] = {1: 10, 25: 20, 50: 20, 100: 100, 200: 100, 1000: 200}

#: Depth 1 repeats its snapshot (same ``u``) when nothing changed for this long, in s.
DEPTH1_REPEAT_S: Final = 3.0


def push_interval_ms(category: str, depth: int) -> int:
    """How often Bybit pushes ``orderbook.{depth}`` on ``category``."""
    if category == "spot" and depth == 200:
        return 200
    return _PUSH_MS[depth]


def stale_after_s(category: str, depth: int) -> float:
    """Silence after which a book is stale: 3 push intervals (depth 1: 3 s + 3 intervals,
    since it repeats its snapshot only every 3 s when nothing changes)."""
    three = 3 * push_interval_ms(category, depth) / 1000.0
    return DEPTH1_REPEAT_S + three if depth == 1 else three


def depth_problem(category: str, depth: int) -> str | None:
    """Why ``depth`` is not one ``category`` serves (one line), or None."""
    allowed = DEPTHS.get(category)
    if allowed is None or depth in allowed:
        return None
    return (f"book_depth: {category} serves depths {', '.join(map(str, allowed))}, "
            f"got {depth!r}")


__all__ = ["DEPTH1_REPEAT_S", "DEPTHS", "depth_problem", "push_interval_ms", "stale_after_s"]
