"""The Bybit sources' configuration: ``bybit.linear`` / ``bybit.spot`` (with the capture
options) and ``bybit.replay``.

Only what registering and ``streamer check`` need: attrs, the core's validators and the
shard hash. The sources themselves (websockets, zstandard, ...) are imported when the
pipeline builds one (plugin.py's factories), so loading the plugin stays cheap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

import attrs

from streamer.validators import Validator, at_least, between, greater_than, unwritable_dir
from streamer_bybit.book_depths import depth_problem
from streamer_bybit.shard import parse_shard, shard_symbols

StreamName = Literal["trades", "klines", "tickers", "price", "liquidations", "derivatives",
                     "orderbook"]
KlineInterval = Literal[
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1D", "1W", "1M"
]

#: Ceiling of ``coalesce_ms``: beyond it the wait is latency for no measurable saving.
COALESCE_MS_MAX: Final = 100.0


#: The most ``capture_queue_mb`` may hold back from the disk.
QUEUE_MB_MAX: Final = 4096


def _queue_mb(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value <= QUEUE_MB_MAX:
        raise ValueError(f"{attribute.name}: expected more than 0 and at most {QUEUE_MB_MAX}, "
                         f"got {value!r}")


@attrs.define
class CaptureOptions:
    """Capture settings shared by the Bybit sources (see docs/recording.md). Validated by
    field validators, so the sources' own ``__attrs_post_init__`` need not call up."""

    #: Write every raw frame received to zstd files in this folder (replay: bybit.replay).
    capture_dir: str | None = None
    #: Start a new capture file past this many MB (compressed).
    capture_file_mb: float = attrs.field(default=256.0, validator=greater_than(0))
    #: Start a new capture file after this many seconds.
    capture_rotate_s: float = attrs.field(default=3600.0, validator=greater_than(0))
    #: Reads waiting for the disk, in MB at most; beyond this new reads are dropped, counted.
    capture_queue_mb: float = attrs.field(default=64.0, validator=_queue_mb)
    #: zstd level (1 fastest .. 19 smallest).
    capture_level: int = attrs.field(default=1, validator=between(1, 19))

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        """``capture_dir`` must take files now (``check`` and ``run``): a capture that could
        write none would lose the whole recording while the source streams on."""
        if not self.capture_dir:
            return []
        problem = unwritable_dir(self.capture_dir)
        return [f"capture_dir: {problem}"] if problem else []


_PATTERN = re.compile(r"[A-Z0-9*?\-_.]+")


def _normalise_symbols(symbols: Any) -> list[str] | str:
    """A list of symbols (upper case, blanks left out), or one string: ``"all"`` (``"*"``)
    or a pattern of symbols (``fnmatch``: ``"*USDT"``), both re-read while running."""
    if isinstance(symbols, str):
        pattern = symbols.strip().upper()
        if pattern == "ALL":
            return "*"
        if not _PATTERN.fullmatch(pattern):
            raise ValueError(f'symbols: expected a list, "all" or a pattern such as "*USDT", '
                             f"got {symbols!r}")
        return pattern
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ValueError(f"symbols: expected a list of strings, \"all\" or a pattern, "
                         f"got {symbols!r}")
    return [s.strip().upper() for s in symbols if s.strip()]


def _one_symbol_source(instance: Any, _: attrs.Attribute[bool], load_all: bool) -> None:
    if load_all and instance.symbols:
        raise ValueError("set either symbols or load_all_symbols = true, not both")
    if not load_all and not instance.symbols:
        raise ValueError("no symbols: set symbols = [...] or load_all_symbols = true")


def _refresh_seconds(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value != 0 and not 10 <= value <= 86_400:
        raise ValueError(f"{attribute.name}: expected 0 (off) or 10 to 86400 seconds, "
                         f"got {value!r}")


def _shard(_: Any, __: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        parse_shard(value)


def _streams(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value:
        raise ValueError('streams is empty: pick from "trades", "klines", "tickers", "price", '
                         '"liquidations", "derivatives", "orderbook"')


def _book_depth(instance: Any, _: attrs.Attribute[int], value: int) -> None:
    problem = depth_problem(instance.book_category, value)
    if problem is not None:
        raise ValueError(problem)


def _book_stale_s(_: Any, __: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not 0 < value < float("inf"):
        raise ValueError(f"book_stale_s: must be a positive number of seconds, got {value!r}")


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

    #: Symbols to stream, e.g. ["BTCUSDT", "ETHUSDT"]; or "all", or a pattern such as
    #: "*USDT": the trading instruments that match, re-read every refresh_symbols_s.
    symbols: Any = attrs.field(factory=list, converter=_normalise_symbols)
    #: Stream every instrument with status Trading (from /v5/market/instruments-info).
    load_all_symbols: bool = attrs.field(default=False, validator=_one_symbol_source)
    #: With load_all_symbols: keep only the first N instruments.
    symbols_limit: int | None = attrs.field(default=None, validator=at_least(1))
    #: What to stream: "trades", "klines" (Bybit's candles), "tickers", "price",
    #: "liquidations" (linear and inverse: allLiquidation), "derivatives" (linear and
    #: inverse: funding, open interest, mark and index price from the tickers).
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
    #: With symbols = "all" / a pattern (or load_all_symbols): seconds between re-reads of
    #: the instrument list; new symbols are subscribed, delisted ones unsubscribed. 0: off;
    #: else 10 to 86400.
    refresh_symbols_s: float = attrs.field(default=300.0, validator=_refresh_seconds)

    def symbol_pattern(self) -> str | None:
        """The pattern of the symbols streamed (``"*"``: all), or None for a fixed list."""
        if self.load_all_symbols:
            return "*"
        return self.symbols if isinstance(self.symbols, str) else None

    def listed_symbols(self) -> list[str]:
        """The symbols configured as a list (empty with a pattern)."""
        return [] if isinstance(self.symbols, str) else list(dict.fromkeys(self.symbols))

    #: The "orderbook" stream's depth (levels a side): linear, inverse and spot 1, 50, 200,
    #: 1000; option 25, 100 (see docs/plugins/bybit.md, "Order books").
    book_depth: int = attrs.field(default=50, validator=_book_depth)
    #: Seconds without a message after which a book is stale and resubscribed (default: 3
    #: push intervals of its depth; depth 1: 3 s more).
    book_stale_s: float | None = attrs.field(default=None, validator=_book_stale_s)

    #: The category whose depths ``book_depth`` is checked against.
    book_category: ClassVar[str] = "linear"

    def check_lines(self) -> list[str]:
        """What ``streamer check`` prints under this source (it does not connect)."""
        if self.shard is None:
            return []
        if self.symbol_pattern() is not None:
            return [f"shard {self.shard}: the symbols are resolved at run (instruments-"
                    "info), then split by the same stable hash"]
        wanted = self.listed_symbols()
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


def _no_liquidations(instance: Any, _: attrs.Attribute[Any], __: Any) -> None:
    for stream in ("liquidations", "derivatives"):
        if stream in instance.streams:
            raise ValueError(f'streams: "{stream}" is for linear and inverse only')


@attrs.define
class BybitSpotConfig(_BybitConfigBase):
    book_category: ClassVar[str] = "spot"

    #: Ticker field behind the "price" stream.
    price_field: Literal["lastPrice", "usdIndexPrice"] = attrs.field(
        default="lastPrice", validator=_no_liquidations)


@attrs.define
class BybitInverseConfig(_BybitConfigBase):
    """``bybit.inverse``: the inverse contracts (BTCUSD, ETHUSDZ25, ...), streamed as linear."""

    book_category: ClassVar[str] = "inverse"

    #: Ticker field behind the "price" stream.
    price_field: Literal["markPrice", "lastPrice", "indexPrice", "bid1Price", "ask1Price"] = (
        "markPrice"
    )


#: The option base coins read when ``base_coins`` is not given and Bybit cannot tell which it
#: lists (/v5/market/option-base-coins fails or names none). Each is a separate instrument
#: list: /v5/market/instruments-info answers BTC's alone without ``baseCoin``.
OPTION_BASE_COINS: Final = ("BTC", "ETH", "SOL")


def _base_coins(value: list[str]) -> list[str]:
    return list(dict.fromkeys(c.strip().upper() for c in value if c.strip()))


def _option_streams(instance: Any, _: attrs.Attribute[list[str]], value: list[str]) -> None:
    if "klines" in instance.streams:
        raise ValueError('streams: "klines" is not a Bybit option topic (the aggregator '
                         'makes candles from the option trades)')
    if value is not None and not value:
        raise ValueError("base_coins is empty: leave it out for every option base coin "
                         "Bybit lists, or name some")


def _no_shard(_: Any, __: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        raise ValueError("shard: option trades come per base coin (publicTrade.BTC), "
                         "not per symbol; split by base_coins instead")


@attrs.define
class BybitOptionConfig(_BybitConfigBase):
    """``bybit.option``: Bybit's options. Trades come per base coin (``publicTrade.BTC``:
    every trade of every BTC option); tickers (with the greeks) per option symbol."""

    #: Ticker field behind the "price" stream.
    price_field: Literal["markPrice", "lastPrice", "indexPrice", "underlyingPrice",
                         "bid1Price", "ask1Price"] = attrs.field(
        default="markPrice", validator=_no_liquidations)
    #: Base coins whose options are streamed (default: every one Bybit lists, from
    #: /v5/market/option-base-coins, read again at each refresh).
    base_coins: list[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_base_coins), validator=_option_streams
    )
    #: Not for options (see _no_shard).
    shard: str | None = attrs.field(default=None, validator=_no_shard)
    #: The "orderbook" stream's depth: options serve 25 and 100.
    book_depth: int = attrs.field(default=25, validator=_book_depth)

    book_category: ClassVar[str] = "option"


BybitConfig = BybitLinearConfig | BybitSpotConfig | BybitInverseConfig | BybitOptionConfig


#: The fastest finite ``speed``: past it, ``"max"`` is what is meant.
SPEED_MAX: Final = 1_000_000


def _path(_: Any, __: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"path: expected a capture file or a folder of captures, got {value!r}")


def _speed(_: Any, __: attrs.Attribute[Any], value: Any) -> None:
    if value == "max":
        return
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 < value <= SPEED_MAX):
        raise ValueError(f'speed: expected a number more than 0 and at most {SPEED_MAX} or '
                         f'"max", got {value!r}')


@attrs.define
class ReplayConfig:
    """Every option is checked by its field validator, so the config loader reports all bad
    ones at once, each with its path."""

    #: A capture file (.bybitcap.zst) or a folder of them (played in name order).
    path: str = attrs.field(default="", validator=_path)
    #: "linear" or "spot", for captures whose header does not say.
    category: Literal["linear", "spot"] | None = None
    #: 1.0 = recorded speed, 10.0 = ten times faster, "max" = as fast as possible.
    speed: Any = attrs.field(default=1.0, validator=_speed)

    @property
    def speed_factor(self) -> float:
        return math.inf if self.speed == "max" else float(self.speed)
