"""The Bybit topics a source subscribes (:func:`build_topics`) and how they are spread over
connections (:func:`pool_topics`)."""

from __future__ import annotations

from typing import Final

from streamer_bybit.config import BybitConfig
from streamer_bybit.intervals import CODES

MAX_ARGS_CHARS: Final = 21_000  # Bybit's limit on the args of one connection


def build_topics(config: BybitConfig, symbols: list[str]) -> list[str]:
    """Bybit topics for ``symbols``, grouped per symbol."""
    streams = set(config.streams)
    tickers = ("tickers" in streams or "derivatives" in streams
               or ("price" in streams and "trades" not in streams))
    codes = [CODES[i] for i in dict.fromkeys(config.kline_intervals)]
    topics: list[str] = []
    for symbol in symbols:
        if "trades" in streams:
            topics.append(f"publicTrade.{symbol}")
        if "klines" in streams:
            topics.extend(f"kline.{code}.{symbol}" for code in codes)
        if tickers:
            topics.append(f"tickers.{symbol}")
        if "liquidations" in streams:
            topics.append(f"allLiquidation.{symbol}")
        if "orderbook" in streams:
            topics.append(f"orderbook.{config.book_depth}.{symbol}")
    return topics


def pool_topics(topics: list[str], per_connection: int) -> list[list[str]]:
    """Split topics over connections: at most ``per_connection`` each, args under 21,000
    characters (counted as JSON: quotes and comma included, for margin)."""
    pools: list[list[str]] = []
    current: list[str] = []
    chars = 0
    for topic in topics:
        cost = len(topic) + 3
        if current and (len(current) >= per_connection or chars + cost >= MAX_ARGS_CHARS):
            pools.append(current)
            current, chars = [], 0
        current.append(topic)
        chars += cost
    if current:
        pools.append(current)
    return pools
