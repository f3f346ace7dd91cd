"""What one Bybit connection is built with: its settings (URL, timings, streams) and what
every connection of a source shares (name, logger, metrics, pacer, REST client, prices)."""

from __future__ import annotations

import logging
import ssl

import attrs

from streamer import Metrics
from streamer_bybit.pacer import ConnectPacer
from streamer_bybit.recovery import RecoverySettings
from streamer_bybit.rest import BybitRest
from streamer_bybit.tickers import PriceTracker


@attrs.define(frozen=True)
class ConnectionSettings:
    url: str
    channel: str  # "linear" | "spot", also the REST category
    ping_interval: float = 20.0
    stale_timeout: float = 30.0
    ack_timeout: float = 10.0
    connect_timeout: float = 10.0
    reconnect_max_delay: float = 30.0
    subscribe_chunk: int = 10
    recover_gaps: bool = True
    #: Seconds the reader waits after handling a read before it reads again (0: off), so
    #: that at light load one wake-up carries several messages (not after a large read:
    #: :data:`streamer_bybit.connection.COALESCE_SKIP`).
    coalesce: float = 0.0
    ssl_context: ssl.SSLContext | None = None
    recovery: RecoverySettings = attrs.Factory(RecoverySettings)
    #: Emit the ticker events (the "tickers" stream).
    emit_tickers: bool = False
    #: The ticker field behind the "price" stream, or None when price comes from trades or
    #: is not streamed.
    ticker_price_field: str | None = None
    #: The "price" stream follows the last trade price.
    price_from_trades: bool = False
    #: The "derivatives" stream (from the merged tickers).
    derivatives: bool = False
    #: The "orderbook" stream's depth (None: no books); a book's silence limit, seconds.
    book_depth: int | None = None
    book_stale_after: float = 1.0


@attrs.frozen
class ConnectionShared:
    """What every connection of one source shares: its name (log lines), logger, metrics,
    connect pacer, REST client (gap recovery; None without) and price tracker."""

    name: str
    logger: logging.Logger
    metrics: Metrics
    pacer: ConnectPacer
    rest: BybitRest | None
    prices: PriceTracker


def connection_name(source: str, index: int) -> str:
    """How the log lines, metrics and capture name connection ``index`` of ``source``."""
    return f"{source}#{index}"
