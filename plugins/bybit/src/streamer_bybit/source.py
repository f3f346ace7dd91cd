"""The ``bybit.linear`` and ``bybit.spot`` sources: symbols, the connection pool, metrics.

The options are in :mod:`streamer_bybit.config`, the topics they subscribe in
:mod:`streamer_bybit.topics`.

``BybitSource.run`` resolves the symbols (instruments-info), spreads the topics over a pool
of :class:`~streamer_bybit.connection.BybitConnection` and reports ``started`` once every
connection is subscribed. It never returns by itself: unreachable REST or WebSocket endpoints
are logged and retried with backoff; a configuration that cannot stream anything (no known
symbol) is a :class:`streamer.FatalError`.
"""

from __future__ import annotations

import ssl
from typing import Any, Final
from urllib.parse import urlsplit

import trio

from streamer import Backoff, Context, Emit, FatalError, PartState, Sample, StreamGap
from streamer_bybit.book_worker import book_samples, book_stale_after
from streamer_bybit.capture import CaptureRun, CaptureTap, run_capture
from streamer_bybit.categories import (
    SUBSCRIBE_CHUNK,
    option_coin,
    option_coins,
    option_instruments,
    option_topics,
    option_trade_symbols,
    recovers_from_rest,
)
from streamer_bybit.config import (
    BybitConfig,
    BybitLinearConfig,
    BybitOptionConfig,
    BybitSpotConfig,
)
from streamer_bybit.connection import REST_ERRORS, BybitConnection, ConnectPacer
from streamer_bybit.connection_settings import ConnectionSettings, ConnectionShared, connection_name
from streamer_bybit.history import BybitHistory
from streamer_bybit.recovery import RecoverySettings, describe
from streamer_bybit.rest import BybitRest, matching_symbols, trading_symbols
from streamer_bybit.shard import shard_symbols
from streamer_bybit.tickers import PriceTracker
from streamer_bybit.topics import build_topics, pool_topics

MAINNET_WS: Final = "wss://stream.bybit.com/v5/public/{category}"
TESTNET_WS: Final = "wss://stream-testnet.bybit.com/v5/public/{category}"
MAINNET_REST: Final = "https://api.bybit.com"
TESTNET_REST: Final = "https://api-testnet.bybit.com"

SYMBOL_CHECK_TIMEOUT: Final = 10.0


class BybitSource:
    """A ``bybit.linear``, ``bybit.inverse``, ``bybit.spot`` or ``bybit.option`` source."""

    def __init__(self, config: BybitConfig, context: Context, category: str) -> None:
        self.config = config
        self.context = context
        self.category = category
        self.logger = context.logger
        self.metrics = context.metrics
        if config.url:
            self.url = config.url
        else:
            self.url = (TESTNET_WS if config.testnet else MAINNET_WS).format(category=category)
        self.rest_url = config.rest_url or (TESTNET_REST if config.testnet else MAINNET_REST)
        self.ssl_context: ssl.SSLContext | None = None
        if config.ca_file:
            self.ssl_context = ssl.create_default_context(cafile=config.ca_file)
        self.rest = BybitRest(
            self.rest_url, timeout=SYMBOL_CHECK_TIMEOUT, ssl_context=self.ssl_context
        )
        #: Answers the transforms downstream about the past (streamer.history).
        self.history = BybitHistory(self.rest, category)
        self.symbols: list[str] = []
        self.unknown_symbols: list[str] = []
        #: Options: symbol -> base coin (the trade topic that carries its trades).
        self.option_coins: dict[str, str] = {}
        self.connections: list[BybitConnection] = []
        # What a connection opened while running needs (set by run).
        self._settings: ConnectionSettings | None = None
        self._shared: ConnectionShared | None = None
        self._emit: Emit | None = None
        self._nursery: trio.Nursery | None = None
        #: The capture's writer while it runs (``capture_dir``): taps of connections opened
        #: later (listings) open on it too.
        self.capture: CaptureRun | None = None
        #: Paces the retries of the start-up instruments load; an attribute (like a
        #: connection's ``backoff``) so that a test can seed its jitter.
        self.symbols_backoff = Backoff(initial=1.0, maximum=max(1.0, config.reconnect_max_delay))
        context.metrics.add_probe(self._samples)
        context.metrics.add_probe(lambda: book_samples(self.connections))
        context.health.add_probe(self._health)

    # ----------------------------------------------------------------- metrics, health
    def _samples(self) -> list[Sample]:
        """Read at scrape time only: the hot path just bumps plain attributes."""
        now = trio.current_time()
        conns = self.connections
        out = [
            Sample("connections", sum(c.connected for c in conns), help="Open WebSocket "
                   "connections"),
            Sample("topics", sum(len(c.topics) for c in conns), help="Topics configured"),
            Sample("subscribed_topics",
                   sum(len(c.active_topics) for c in conns if c.subscribed_at is not None),
                   help="Topics subscribed on the open connections"),
            Sample("reconnects", sum(c.reconnects for c in conns), kind="counter",
                   help="Connections lost and reopened"),
            Sample("received_messages", sum(c.messages for c in conns), kind="counter",
                   help="WebSocket messages received"),
            Sample("received_trades", sum(c.decoder.trades for c in conns), kind="counter",
                   help="Trades received (live, not recovered)"),
        ]
        for c in conns:
            if c.last_data is not None:
                out.append(Sample("last_message_age_seconds", now - c.last_data,
                                  {"connection": c.name},
                                  help="Seconds since the connection's newest data message"))
        return out

    def _health(self) -> list[PartState]:
        name = self.context.name
        if not self.connections:
            return [PartState(name, False, "resolving symbols")]
        out = []
        for c in self.connections:
            if c.subscribed_at is None:
                state = PartState(c.name, False, "connecting" if not c.connected
                                  else "subscribing")
            elif c.refused:
                state = PartState(c.name, False, f"{len(c.refused)} of {len(c.topics)} topics "
                                  f"refused: {', '.join(sorted(c.refused)[:5])}")
            else:
                last = max(c.last_data or 0.0, c.subscribed_at)
                state = PartState(c.name, True, last_data=last)
            out.append(state)
        return out

    # ----------------------------------------------------------------- symbols
    async def _instruments(self) -> list[dict[str, Any]]:
        if isinstance(self.config, BybitOptionConfig):
            coins = self.config.base_coins
            if coins is None:  # every one Bybit lists, read again at each refresh
                coins = await option_coins(self.rest, self.metrics, self.logger,
                                           self.context.name)
            instruments = await option_instruments(self.rest, coins)
            self.option_coins = {i["symbol"]: option_coin(i) for i in instruments}
            return instruments
        return await self.rest.instruments(self.category)

    def _topics(self) -> list[str]:
        if self.category == "option":
            return option_topics(self.config.streams, self.symbols, self.option_coins)
        return build_topics(self.config, self.symbols)

    def topics_of(self, symbols: list[str]) -> list[str]:
        """The topics of ``symbols`` (live discovery: :mod:`streamer_bybit.listing`)."""
        if self.category == "option":
            return option_topics(self.config.streams, symbols, self.option_coins)
        return build_topics(self.config, symbols)

    def trade_symbols_of(self, topics: list[str]) -> tuple[str, ...] | None:
        return self._trade_symbols(topics)

    async def emit_gap(self, gap: StreamGap) -> None:
        """A gap of the source's own (a delisting's end), captured for a replay too."""
        if self.capture is not None:
            self.capture.gap(gap)
        if self._emit is not None:
            await self._emit.gap(gap)

    def open_connection(self, topics: list[str]) -> BybitConnection:
        """A new connection for ``topics`` (live discovery), started in the running pool;
        captured like the others."""
        assert self._settings is not None and self._shared is not None
        assert self._emit is not None and self._nursery is not None
        index = len(self.connections)
        connection = BybitConnection(index, topics, self._settings, self._emit, self._shared,
                                     capture=self._capture_tap(index),
                                     trade_symbols=self._trade_symbols(topics))
        self.connections.append(connection)
        self._nursery.start_soon(connection.run)
        return connection

    def _capture_tap(self, index: int) -> CaptureTap | None:
        """Connection ``index``'s way into the capture (None without ``capture_dir``); on
        the running capture at once when it runs already (a connection opened later)."""
        if not self.config.capture_dir:
            return None
        assert self._shared is not None
        tap = CaptureTap(connection_name(self._shared.name, index))
        if self.capture is not None:
            self.capture.add(tap)
        return tap

    def _trade_symbols(self, topics: list[str]) -> tuple[str, ...] | None:
        """Options: the symbols a connection's ``publicTrade.<COIN>`` topics carry."""
        if self.category != "option":
            return None
        # Every option of the coin: publicTrade.<COIN> carries them all, listed or not.
        known = list(self.option_coins) or self.symbols
        return option_trade_symbols(topics, known, self.option_coins)

    async def resolve_symbols(self) -> list[str]:
        """The symbols to stream; logs and retries while REST is needed but unreachable."""
        config = self.config
        host = urlsplit(self.rest_url).netloc
        pattern = config.symbol_pattern()
        if pattern is not None:
            backoff = self.symbols_backoff
            backoff.reset()
            while True:
                try:
                    instruments = await self._instruments()
                    break
                except REST_ERRORS as exc:
                    delay = backoff.next()
                    self.metrics.inc("rest_failures")
                    self.logger.warning(
                        "%s: cannot load the %s instruments from %s: %s; next retry in %.1f s",
                        self.context.name,
                        self.category,
                        host,
                        describe(exc),
                        delay,
                    )
                    await trio.sleep(delay)
            symbols = matching_symbols(instruments, pattern, config.symbols_limit)
            if not symbols:
                raise FatalError(f"{host} lists no trading {self.category} instruments"
                                 + (f" matching {pattern!r}" if pattern != "*" else ""))
            self.logger.info(
                "%s: streaming all %d trading %s instruments%s",
                self.context.name,
                len(symbols),
                self.category,
                f" matching {pattern!r}" if pattern != "*" else "",
            )
            return symbols
        wanted = config.listed_symbols()
        try:
            instruments = await self._instruments()
        except REST_ERRORS as exc:
            self.metrics.inc("rest_failures")
            self.logger.warning(
                "%s: cannot check the symbols against %s (%s); streaming %s unchecked",
                self.context.name,
                host,
                describe(exc),
                ", ".join(wanted),
            )
            return wanted[: config.symbols_limit] if config.symbols_limit else wanted
        known = set(trading_symbols(instruments))
        self.unknown_symbols = [s for s in wanted if s not in known]
        symbols = [s for s in wanted if s in known]
        if self.unknown_symbols:
            self.metrics.inc("unknown_symbols", len(self.unknown_symbols))
            self.logger.warning(
                "%s: unknown or not trading %s symbols left out: %s",
                self.context.name,
                self.category,
                ", ".join(self.unknown_symbols),
            )
        if not symbols:
            raise FatalError(
                f"none of the configured symbols is a trading {self.category} instrument "
                f"on {host}: {', '.join(wanted)}"
            )
        if config.symbols_limit is not None:
            symbols = symbols[: config.symbols_limit]
        return symbols

    # ----------------------------------------------------------------- running
    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        if self.connections:
            # Run again: the runtime restarts a source whose run failed (with the same emit).
            # Its connections go on with their recovery state (the last trade delivered per
            # symbol), so the trades missed meanwhile are recovered from REST or reported as a
            # trade gap; new connections would start blank and lose them unreported.
            await self._run_connections(task_status)
            return
        config = self.config
        universe = await self.resolve_symbols()
        self.symbols = shard_symbols(universe, config.shard)
        if config.shard is not None:
            if not self.symbols:
                raise FatalError(f"shard {config.shard} holds none of the {len(universe)} "
                                 f"{self.category} symbols")
            self.logger.info("%s: shard %s: %d of %d symbols: %s", self.context.name,
                             config.shard, len(self.symbols), len(universe),
                             ", ".join(self.symbols))
        topics = self._topics()
        pools = pool_topics(topics, config.topics_per_connection)
        streams = set(config.streams)
        ticker_price = "price" in streams and ("tickers" in streams or "trades" not in streams)
        settings = ConnectionSettings(
            url=self.url,
            channel=self.category,
            ping_interval=config.ping_interval,
            stale_timeout=config.stale_timeout,
            ack_timeout=config.ack_timeout,
            reconnect_max_delay=config.reconnect_max_delay,
            subscribe_chunk=SUBSCRIBE_CHUNK.get(self.category, 10),
            # Options: no per-symbol REST recovery, but the gaps are still reported.
            recover_gaps=(config.recover_gaps or not recovers_from_rest(self.category))
            and "trades" in streams,
            coalesce=config.coalesce_ms / 1000.0,
            ssl_context=self.ssl_context,
            recovery=RecoverySettings(
                deadline=config.recovery_deadline,
                max_held=config.recovery_max_held,
                rest_lag_max=config.rest_lag_max,
                request_timeout=SYMBOL_CHECK_TIMEOUT,
            ),
            emit_tickers="tickers" in streams,
            ticker_price_field=config.price_field if ticker_price else None,
            price_from_trades="price" in streams and not ticker_price,
            derivatives="derivatives" in streams,
            book_depth=config.book_depth if "orderbook" in streams else None,
            book_stale_after=book_stale_after(config, self.category),
        )
        shared = ConnectionShared(
            name=self.context.name, logger=self.logger, metrics=self.metrics,
            pacer=ConnectPacer(config.connect_rate),
            rest=self.rest if recovers_from_rest(self.category) else None,
            prices=PriceTracker(self.category),
        )
        self._settings, self._shared, self._emit = settings, shared, emit
        self.connections = [
            BybitConnection(index, pool, settings, emit, shared,
                            capture=self._capture_tap(index),
                            trade_symbols=self._trade_symbols(pool))
            for index, pool in enumerate(pools)
        ]
        await self._run_connections(task_status)

    async def _run_connections(self, task_status: trio.TaskStatus[None]) -> None:
        """Run the connections (and the capture); ``started()`` once each is subscribed."""
        config = self.config
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            remaining = len(self.connections)
            all_subscribed = trio.Event()

            async def start(connection: BybitConnection) -> None:
                nonlocal remaining
                await nursery.start(connection.run)
                remaining -= 1
                if remaining == 0:
                    all_subscribed.set()

            if config.capture_dir:
                self.capture = await nursery.start(run_capture, config, self.context.name,
                                                   self.connections,
                                    self.metrics, self.logger)
            for connection in self.connections:
                nursery.start_soon(start, connection)
            await all_subscribed.wait()
            refused = sum(len(c.refused) for c in self.connections)
            topics = sum(len(c.topics) for c in self.connections)
            self.logger.info(
                "%s: subscribed %d topics (%d refused) for %d symbols over %d connections",
                self.context.name,
                topics - refused,
                refused,
                len(self.symbols),
                len(self.connections),
            )
            task_status.started()
            if config.symbol_pattern() is not None and config.refresh_symbols_s > 0:
                from streamer_bybit.listing import SymbolListing

                nursery.start_soon(SymbolListing(self).run)


__all__ = [
    "BybitConfig",
    "BybitLinearConfig",
    "BybitSource",
    "BybitSpotConfig",
    "build_topics",
    "pool_topics",
]
