"""The ``bybit.linear`` and ``bybit.spot`` sources: configuration, symbols, topic pool.

``BybitSource.run`` resolves the symbols (instruments-info), spreads the topics over a pool
of :class:`~streamer_bybit.connection.BybitConnection` and reports ``started`` once every
connection is subscribed. It never returns by itself: unreachable REST or WebSocket endpoints
are logged and retried with backoff; a configuration that cannot stream anything (no known
symbol) is a :class:`streamer.FatalError`.
"""

from __future__ import annotations

import ssl
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs
import trio

from streamer import Backoff, Context, Emit, FatalError, PartState, Sample
from streamer.validators import Validator, at_least, between, greater_than
from streamer_bybit.capture import CaptureOptions, CaptureTap, run_capture
from streamer_bybit.connection import (
    REST_ERRORS,
    BybitConnection,
    ConnectionSettings,
    ConnectionShared,
    ConnectPacer,
    _describe,
    connection_name,
)
from streamer_bybit.history import BybitHistory
from streamer_bybit.intervals import CODES
from streamer_bybit.recovery import RecoverySettings
from streamer_bybit.rest import BybitRest, trading_symbols
from streamer_bybit.shard import parse_shard, shard_symbols
from streamer_bybit.tickers import PriceTracker

StreamName = Literal["trades", "klines", "tickers", "price"]
KlineInterval = Literal[
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1D", "1W", "1M"
]


MAINNET_WS: Final = "wss://stream.bybit.com/v5/public/{category}"
TESTNET_WS: Final = "wss://stream-testnet.bybit.com/v5/public/{category}"
MAINNET_REST: Final = "https://api.bybit.com"
TESTNET_REST: Final = "https://api-testnet.bybit.com"

MAX_ARGS_CHARS: Final = 21_000  # Bybit's limit on the args of one connection
SUBSCRIBE_CHUNK: Final = {"spot": 10, "linear": 100}  # spot answers "args size >10" beyond 10
SYMBOL_CHECK_TIMEOUT: Final = 10.0
#: Ceiling of ``coalesce_ms``: beyond it the wait is latency for no measurable saving.
COALESCE_MS_MAX: Final = 100.0


def _normalise_symbols(symbols: list[str]) -> list[str]:
    return [s.strip().upper() for s in symbols if s.strip()]


def _one_symbol_source(instance: Any, _: attrs.Attribute[bool], load_all: bool) -> None:
    if load_all and instance.symbols:
        raise ValueError("set either symbols or load_all_symbols = true, not both")
    if not load_all and not instance.symbols:
        raise ValueError("no symbols: set symbols = [...] or load_all_symbols = true")


def _shard(_: Any, __: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        parse_shard(value)


def _streams(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError('streams is empty: pick from "trades", "klines", "tickers", "price"')


def _kline_intervals(instance: Any, _: attrs.Attribute[list[str]], value: list[str]) -> None:
    if "klines" in instance.streams and not value:
        raise ValueError('streams has "klines" but kline_intervals is empty')


def _longer_than_ping(instance: Any, _: attrs.Attribute[float], value: float) -> None:
    if not value > instance.ping_interval:
        raise ValueError(f"stale_timeout ({value:g}) must be longer than ping_interval "
                         f"({instance.ping_interval:g})")


def _positive_seconds(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value < float("inf"):  # NaN fails too
        raise ValueError(f"{attribute.name}: must be a positive number of seconds, "
                         f"got {value!r}")


def _rest_lag_max(instance: Any, _: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < instance.recovery_deadline:
        raise ValueError(f"rest_lag_max ({value:g}) must be >= 0 and shorter than "
                         f"recovery_deadline ({instance.recovery_deadline:g})")


def _url_of(*schemes: str) -> Validator:
    def check(_: Any, attribute: attrs.Attribute[str | None], value: str | None) -> None:
        if value is None:
            return
        if urlsplit(value).scheme not in schemes or not urlsplit(value).hostname:
            raise ValueError(f"{attribute.name} must be a {' or '.join(schemes)} URL, "
                             f"got {value!r}")

    return check


@attrs.define
class _BybitConfigBase(CaptureOptions):
    """Each option is checked by its field validator (cross-field checks included), so the
    config loader reports every bad option at once, each with its path."""

    #: Symbols to stream, e.g. ["BTCUSDT", "ETHUSDT"] (or use load_all_symbols).
    symbols: list[str] = attrs.field(factory=list, converter=_normalise_symbols)
    #: Stream every instrument with status Trading (from /v5/market/instruments-info).
    load_all_symbols: bool = attrs.field(default=False, validator=_one_symbol_source)
    #: With load_all_symbols: keep only the first N instruments.
    symbols_limit: int | None = attrs.field(default=None, validator=at_least(1))
    #: What to stream: "trades", "klines" (Bybit's candles), "tickers", "price".
    streams: list[StreamName] = attrs.field(factory=lambda: ["trades"], validator=_streams)
    #: Intervals of the "klines" stream.
    kline_intervals: list[KlineInterval] = attrs.field(
        factory=lambda: ["1m"], validator=_kline_intervals
    )
    #: WebSocket URL (default: Bybit mainnet, or testnet with testnet = true).
    url: str | None = attrs.field(default=None, validator=_url_of("ws", "wss"))
    #: REST base URL (default: https://api.bybit.com, or the testnet one).
    rest_url: str | None = attrs.field(default=None, validator=_url_of("http", "https"))
    #: Use Bybit's testnet endpoints (unless url / rest_url are given).
    testnet: bool = False
    #: A CA bundle (PEM) to trust for wss:// and https:// instead of the system store.
    ca_file: str | None = None
    #: Topics per WebSocket connection.
    topics_per_connection: int = attrs.field(default=100, validator=at_least(1))
    #: Seconds between {"op":"ping"} messages.
    ping_interval: float = attrs.field(default=20.0, validator=greater_than(0))
    #: A connection with no data and no pong for this long is dead and reconnected.
    stale_timeout: float = attrs.field(default=30.0, validator=_longer_than_ping)
    #: Seconds to wait for a subscribe ack.
    ack_timeout: float = attrs.field(default=10.0, validator=greater_than(0))
    #: Upper bound of the reconnect backoff, seconds.
    reconnect_max_delay: float = attrs.field(default=30.0, validator=at_least(0.5))
    #: Connections opened per second at most (after a burst of 5).
    connect_rate: float = attrs.field(default=1.5, validator=greater_than(0))
    #: After a reconnect, fetch missed trades from REST recent-trade.
    recover_gaps: bool = True
    #: Seconds after a resubscribe by which gap recovery is done or reports a trade gap.
    recovery_deadline: float = attrs.field(default=30.0, validator=_positive_seconds)
    #: Live trades held per connection while recovering; past it they are emitted at once.
    recovery_max_held: int = attrs.field(default=20_000, validator=at_least(1))
    #: Longest lag of REST recent-trade behind the WebSocket assumed for a symbol that has
    #: no live trade after the resubscribe (nothing to check the REST rows against).
    rest_lag_max: float = attrs.field(default=5.0, validator=_rest_lag_max)
    #: "K/N": stream only this process's part of the symbols (stable hash, see shard.py).
    shard: str | None = attrs.field(default=None, validator=_shard)
    #: Milliseconds each connection's reader waits after a socket read before the next
    #: one, so that at light load one wake-up carries several messages (0: read at once).
    #: Adds up to this much latency; skipped after a large read. 0 to 100.
    coalesce_ms: float = attrs.field(default=5.0, validator=between(0, COALESCE_MS_MAX))

    def check_lines(self) -> list[str]:
        """What ``streamer check`` prints under this source (it does not connect)."""
        if self.shard is None:
            return []
        if self.load_all_symbols:
            return [f"shard {self.shard}: load_all_symbols is resolved at run (instruments-"
                    "info), then split by the same stable hash"]
        wanted = list(dict.fromkeys(self.symbols))
        if self.symbols_limit is not None:
            wanted = wanted[: self.symbols_limit]
        mine = shard_symbols(wanted, self.shard)
        return [f"shard {self.shard}: {len(mine)} of {len(wanted)} symbols: "
                f"{', '.join(mine) or '(none)'}"]


@attrs.define
class BybitLinearConfig(_BybitConfigBase):
    #: Ticker field behind the "price" stream.
    price_field: Literal["markPrice", "lastPrice", "indexPrice", "bid1Price", "ask1Price"] = (
        "markPrice"
    )


@attrs.define
class BybitSpotConfig(_BybitConfigBase):
    #: Ticker field behind the "price" stream.
    price_field: Literal["lastPrice", "usdIndexPrice"] = "lastPrice"


BybitConfig = BybitLinearConfig | BybitSpotConfig


def build_topics(config: BybitConfig, symbols: list[str]) -> list[str]:
    """Bybit topics for ``symbols``, grouped per symbol."""
    streams = set(config.streams)
    tickers = "tickers" in streams or ("price" in streams and "trades" not in streams)
    codes = [CODES[i] for i in dict.fromkeys(config.kline_intervals)]
    topics: list[str] = []
    for symbol in symbols:
        if "trades" in streams:
            topics.append(f"publicTrade.{symbol}")
        if "klines" in streams:
            topics.extend(f"kline.{code}.{symbol}" for code in codes)
        if tickers:
            topics.append(f"tickers.{symbol}")
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


class BybitSource:
    """A ``bybit.linear`` or ``bybit.spot`` source."""

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
        self.connections: list[BybitConnection] = []
        #: Paces the retries of the start-up instruments load; an attribute (like a
        #: connection's ``backoff``) so that a test can seed its jitter.
        self.symbols_backoff = Backoff(initial=1.0, maximum=max(1.0, config.reconnect_max_delay))
        context.metrics.add_probe(self._samples)
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
        return await self.rest.instruments(self.category)

    async def resolve_symbols(self) -> list[str]:
        """The symbols to stream; logs and retries while REST is needed but unreachable."""
        config = self.config
        host = urlsplit(self.rest_url).netloc
        if config.load_all_symbols:
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
                        _describe(exc),
                        delay,
                    )
                    await trio.sleep(delay)
            symbols = trading_symbols(instruments)
            if config.symbols_limit is not None:
                symbols = symbols[: config.symbols_limit]
            if not symbols:
                raise FatalError(f"{host} lists no trading {self.category} instruments")
            self.logger.info(
                "%s: streaming all %d trading %s instruments",
                self.context.name,
                len(symbols),
                self.category,
            )
            return symbols
        wanted = list(dict.fromkeys(config.symbols))
        try:
            instruments = await self._instruments()
        except REST_ERRORS as exc:
            self.metrics.inc("rest_failures")
            self.logger.warning(
                "%s: cannot check the symbols against %s (%s); streaming %s unchecked",
                self.context.name,
                host,
                _describe(exc),
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
        topics = build_topics(config, self.symbols)
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
            recover_gaps=config.recover_gaps and "trades" in streams,
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
        )
        shared = ConnectionShared(
            name=self.context.name, logger=self.logger, metrics=self.metrics,
            pacer=ConnectPacer(config.connect_rate), rest=self.rest,
            prices=PriceTracker(self.category),
        )
        capture = bool(config.capture_dir)
        self.connections = [
            BybitConnection(
                index, pool, settings, emit, shared,
                capture=CaptureTap(connection_name(shared.name, index)) if capture else None)
            for index, pool in enumerate(pools)
        ]
        await self._run_connections(task_status)

    async def _run_connections(self, task_status: trio.TaskStatus[None]) -> None:
        """Run the connections (and the capture); ``started()`` once each is subscribed."""
        config = self.config
        async with trio.open_nursery() as nursery:
            remaining = len(self.connections)
            all_subscribed = trio.Event()

            async def start(connection: BybitConnection) -> None:
                nonlocal remaining
                await nursery.start(connection.run)
                remaining -= 1
                if remaining == 0:
                    all_subscribed.set()

            if config.capture_dir:
                await nursery.start(run_capture, config, self.context.name, self.connections,
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
