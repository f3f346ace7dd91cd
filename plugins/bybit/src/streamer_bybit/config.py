"""The ``bybit.linear`` and ``bybit.spot`` options, and the topics they subscribe.

Every option is checked by its field validator (cross-field checks included), so the config
loader reports every bad option at once, each with its path. :func:`build_topics` turns the
options into Bybit topics and :func:`pool_topics` spreads them over connections.
"""

from __future__ import annotations

from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs

from streamer.validators import Validator, at_least, between, greater_than
from streamer_bybit.capture import CaptureOptions
from streamer_bybit.intervals import CODES
from streamer_bybit.shard import parse_shard, shard_symbols

StreamName = Literal["trades", "klines", "tickers", "price"]
KlineInterval = Literal[
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1D", "1W", "1M"
]

MAX_ARGS_CHARS: Final = 21_000  # Bybit's limit on the args of one connection
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


__all__ = [
    "COALESCE_MS_MAX",
    "MAX_ARGS_CHARS",
    "BybitConfig",
    "BybitLinearConfig",
    "BybitSpotConfig",
    "KlineInterval",
    "StreamName",
    "build_topics",
    "pool_topics",
]
