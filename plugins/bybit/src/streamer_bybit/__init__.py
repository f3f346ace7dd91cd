"""Bybit V5 public market data sources (``bybit.linear``, ``bybit.spot``) for streamer."""

from __future__ import annotations

from streamer_bybit.source import BybitLinearConfig, BybitSource, BybitSpotConfig

__all__ = ["BybitLinearConfig", "BybitSource", "BybitSpotConfig"]
