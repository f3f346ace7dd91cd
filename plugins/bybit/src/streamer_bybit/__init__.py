"""Bybit V5 public market data sources (``bybit.linear``, ``bybit.spot``) for streamer."""

from __future__ import annotations

from typing import Any

from streamer_bybit.config import BybitLinearConfig, BybitSpotConfig

__all__ = ["BybitLinearConfig", "BybitSource", "BybitSpotConfig"]


def __getattr__(name: str) -> Any:
    # The source imports websockets and zstandard: only when asked for (plugin loading
    # imports this package, and ``streamer check`` must not pay for them).
    if name == "BybitSource":
        from streamer_bybit.source import BybitSource

        return BybitSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
