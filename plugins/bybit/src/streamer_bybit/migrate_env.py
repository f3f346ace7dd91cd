"""``streamer migrate-env [PATH]``: print the streamer.toml equivalent to the older Bybit
klines streamer's ``.env`` (a command of this plugin).

The output names the bundled plugins' types (``klines.from_trades``, ``redis``, ...) as text
only: no plugin imports another. Anything without an equivalent
becomes a ``#`` comment saying so; secrets become ``*_env`` references to the variable that
holds them, never values. docs/migrating.md is the table this follows.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamer.intervals import MONTH_MS, interval_label, parse_interval
from streamer_bybit.intervals import CODES as BYBIT_INTERVALS
from streamer_bybit.oldenv import OLD_VARIABLES, parse_dotenv

#: The older streamer's interval units, in ms (``<n>ms`` too, from 100 ms).
_UNITS = {"s": 1000, "m": 60_000, "h": 3_600_000, "D": 86_400_000, "d": 86_400_000,
          "W": 7 * 86_400_000, "w": 7 * 86_400_000, "M": 30 * 86_400_000}
_INTERVAL = re.compile(r"^(\d+)(ms|s|m|h|D|d|W|w|M)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "WARN": "WARNING",
               "ERROR": "ERROR", "CRITICAL": "ERROR", "FATAL": "ERROR"}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class _Out:
    """The TOML text being written, with the notes that go to its top."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def table(self, header: str, items: list[tuple[str, Any]],
              comments: list[str] | None = None) -> None:
        self.lines.append("")
        self.lines.extend(f"# {c}" for c in comments or [])
        self.lines.append(header)
        self.lines.extend(f"{k} = {_toml(v)}" for k, v in items)

    def note(self, text: str) -> None:
        self.notes.append(text)


class _Env:
    """The .env values, with typed getters that note what they could not read."""

    def __init__(self, env: Mapping[str, str], out: _Out) -> None:
        self.env = env
        self.out = out
        self.used: set[str] = set()

    def get_str(self, name: str) -> str | None:
        self.used.add(name)
        value = self.env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def get_bool(self, name: str, default: bool) -> bool:
        value = self.get_str(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.out.note(f"{name}={value!r} is not true/false; used {str(default).lower()}")
        return default

    def get_int(self, name: str) -> int | None:
        value = self.get_str(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            self.out.note(f"{name}={value!r} is not an integer; left out")
            return None

    def get_float(self, name: str) -> float | None:
        value = self.get_str(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            self.out.note(f"{name}={value!r} is not a number; left out")
            return None

    def get_list(self, name: str) -> list[str]:
        value = self.get_str(name)
        return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _intervals(env: _Env, out: _Out, passthrough: bool) -> list[str]:
    """The intervals to build (any length here) or, in kline mode, to take from Bybit's kline
    stream (Bybit's lengths only)."""
    labels = []
    for text in env.get_list("STREAMER_KLINE_INTERVALS") or ["1m"]:
        label = _interval_label(text)
        if label is None:
            out.note(f"STREAMER_KLINE_INTERVALS: {text!r} has no equivalent (intervals here: "
                     "<n> ms (from 100), s, m, h, D, W or M, e.g. 500ms 15s 1m 4h 1D 1W 1M); "
                     "left out")
        elif passthrough and label not in BYBIT_INTERVALS:
            out.note(f"STREAMER_KLINE_INTERVALS: {text!r}: Bybit has no such kline stream "
                     f"(kline mode takes {' '.join(BYBIT_INTERVALS)}); left out")
        elif label not in labels:
            labels.append(label)
    return labels


def _interval_label(text: str) -> str | None:
    """This streamer's label for one of the older streamer's intervals (``1d`` -> ``1D``,
    ``60m`` -> ``1h``), or None when it has none."""
    match = _INTERVAL.match(text)
    if match is None:
        return None
    n, unit = int(match.group(1)), match.group(2)
    label = f"{n}M" if unit == "M" else None
    if label is None:
        ms = n if unit == "ms" else n * _UNITS[unit]
        if ms % MONTH_MS == 0:
            return None  # a whole number of nominal months is not a calendar month
        try:
            label = interval_label(ms)
        except ValueError:
            return None
    try:
        parse_interval(label)
    except ValueError:
        return None
    return label


def migrate(env: Mapping[str, str], source_name: str = ".env") -> str:
    """The streamer.toml text equivalent to the older streamer's ``env``."""
    out = _Out()
    e = _Env(env, out)
    # -- [streamer] ----------------------------------------------------------------------
    settings: list[tuple[str, Any]] = []
    level = e.get_str("STREAMER_LOG_LEVEL")
    if level is not None:
        mapped = _LOG_LEVELS.get(level.upper())
        if mapped is None:
            out.note(f"STREAMER_LOG_LEVEL={level!r} is unknown; left at INFO")
        else:
            settings.append(("log_level", mapped))
    log_format = e.get_str("STREAMER_LOG_FORMAT")
    if log_format is not None:
        settings.append(("log_format", "json" if log_format.lower() == "json" else "text"))
        if log_format.lower() not in ("json", "text"):
            out.note(f"STREAMER_LOG_FORMAT={log_format!r}: formats here are text and json; "
                     "used text")
    log_file = e.get_str("STREAMER_LOG_FILE")
    if log_file is not None:
        settings.append(("log_file", log_file))
    host = e.get_str("STREAMER_HOST")
    if host is not None:
        out.note(f"STREAMER_HOST={host!r} named the domain of the older Traefik compose file; "
                 "docker-compose.traefik.yml reads the same variable")
    # -- what is streamed ----------------------------------------------------------------
    klines_on = e.get_bool("STREAMER_ENABLE_KLINES_STREAM", True)
    passthrough = e.get_bool("STREAMER_KLINES_MODE", False)
    out_streams = [name for var, name in (("STREAMER_ENABLE_TRADES_STREAM", "trades"),
                                          ("STREAMER_ENABLE_TICKER_STREAM", "tickers"),
                                          ("STREAMER_ENABLE_PRICE_STREAM", "price"))
                   if e.get_bool(var, False)]
    intervals = _intervals(e, out, passthrough) if klines_on else []
    if klines_on and not intervals:
        out.note("no usable kline interval: klines are off")
        klines_on = False
    channels = ["linear"] + (["spot"] if e.get_bool("STREAMER_ENABLE_SPOT_STREAM", False) else [])
    feed = "klines" if passthrough else "trades"
    if not klines_on and not out_streams:
        out.note("every STREAMER_ENABLE_*_STREAM is off: streaming trades so that the "
                 "pipeline has something to do")
        out_streams = ["trades"]
    # -- sources -------------------------------------------------------------------------
    symbol_items: list[tuple[str, Any]] = []
    symbols = [s.upper() for s in e.get_list("STREAMER_BYBIT_SYMBOLS")]
    load_all = e.get_bool("STREAMER_BYBIT_LOAD_ALL_SYMBOLS", False)
    if load_all:
        symbol_items.append(("load_all_symbols", True))
        if symbols:
            out.note("STREAMER_BYBIT_SYMBOLS is ignored with STREAMER_BYBIT_LOAD_ALL_SYMBOLS")
    else:
        if not symbols:
            out.note("no STREAMER_BYBIT_SYMBOLS: streaming BTCUSDT")
        symbol_items.append(("symbols", symbols or ["BTCUSDT"]))
    limit = e.get_int("STREAMER_BYBIT_SYMBOLS_LIMIT")
    if limit is not None and limit > 0:
        symbol_items.append(("symbols_limit", limit))
    pool = e.get_int("STREAMER_BYBIT_SOCKET_POOL_SIZE")
    pool_comment: list[str] = []
    if pool is not None and pool > 0:
        pool_comment = [f"STREAMER_BYBIT_SOCKET_POOL_SIZE={pool}: connections are sized here "
                        "by topics_per_connection (topics per socket), not by a count of "
                        "sockets"]
        if not load_all:
            # Topics per symbol of the busiest source: publicTrade, tickers (price comes from
            # tickers or trades), one kline topic per interval.
            kinds = {"trades" if s == "price" and "trades" in out_streams
                     and "tickers" not in out_streams else
                     "tickers" if s == "price" else s for s in out_streams}
            per_symbol = max(len(kinds), (len(intervals) if passthrough else 1)
                             if klines_on else 0)
            topics = max(1, len(symbols or ["BTCUSDT"]) * max(1, per_symbol))
            pool_comment[0] += f"; about {topics} topics per source over {pool} sockets"
            symbol_items.append(("topics_per_connection", max(1, math.ceil(topics / pool))))
        else:
            pool_comment[0] += " (the default of 100 is kept with load_all_symbols)"

    sink_inputs: list[str] = []
    feeds: list[str] = []
    for channel in channels:
        base = [("name", channel), ("type", f"bybit.{channel}"), *symbol_items]
        streams = list(out_streams)
        separate_feed = klines_on and feed not in streams
        if klines_on and not streams:
            streams, separate_feed = [feed], False
        items = [*base, ("streams", streams)]
        if passthrough and klines_on and not separate_feed:
            items.append(("kline_intervals", intervals))
        out.table("[[sources]]", items, pool_comment if channel == "linear" else [])
        if out_streams:
            sink_inputs.append(channel)
        if klines_on and not separate_feed:
            feeds.append(channel)
        if separate_feed:
            feed_items = [("name", f"{channel}_klines"), ("type", f"bybit.{channel}"),
                          *symbol_items, ("streams", [feed])]
            if passthrough:
                feed_items.append(("kline_intervals", intervals))
            out.table("[[sources]]", feed_items, [
                f"only feeds the klines: its {feed} are not published "
                f"(STREAMER_ENABLE_{'TRADES' if feed == 'trades' else 'KLINES'}_STREAM)"])
            feeds.append(f"{channel}_klines")
    # -- klines ----------------------------------------------------------------------------
    if klines_on:
        items = [("name", "klines")]
        comments = []
        if passthrough:
            items += [("type", "klines.passthrough"), ("inputs", feeds), ("intervals", intervals)]
            comments.append("STREAMER_KLINES_MODE=true: Bybit's own candles, closed ones only")
            for var in ("STREAMER_AGGREGATOR_WAITER_MODE_ENABLED",
                        "STREAMER_AGGREGATOR_WAITER_LATENCY_MS"):
                if e.get_str(var) is not None:
                    out.note(f"{var} has no effect with STREAMER_KLINES_MODE=true")
        else:
            items += [("type", "klines.from_trades"), ("inputs", feeds),
                      ("intervals", intervals)]
            waiter = e.get_bool("STREAMER_AGGREGATOR_WAITER_MODE_ENABLED", True)
            items.append(("waiter", waiter))
            latency = e.get_int("STREAMER_AGGREGATOR_WAITER_LATENCY_MS")
            if latency is not None:
                if 80 <= latency <= 150:
                    items.append(("waiter_latency_ms", latency))
                else:
                    clamped = min(150, max(80, latency))
                    items.append(("waiter_latency_ms", clamped))
                    out.note(f"STREAMER_AGGREGATOR_WAITER_LATENCY_MS={latency} is outside "
                             f"80-150; used {clamped}")
        out.table("[[transforms]]", items, comments)
        sink_inputs.insert(0, "klines")
    # -- sinks ---------------------------------------------------------------------------
    redis_items: list[tuple[str, Any]] = []
    for var, key, kind in (("STREAMER_REDIS_HOST", "host", "str"),
                           ("STREAMER_REDIS_PORT", "port", "int"),
                           ("STREAMER_REDIS_USER", "username", "str"),
                           ("STREAMER_REDIS_BASE", "db", "int"),
                           ("STREAMER_REDIS_MAIN_KEY", "main_key", "str")):
        value = e.get_int(var) if kind == "int" else e.get_str(var)
        if value is not None:
            redis_items.append((key, value))
    redis_comments = []
    if e.get_str("STREAMER_REDIS_PASSWORD") is not None:
        redis_items.append(("password_env", "STREAMER_REDIS_PASSWORD"))
        redis_comments.append("the password is read from $STREAMER_REDIS_PASSWORD at start")
    consumers = [c.lower() for c in e.get_list("STREAMER_ENABLED_CONSUMERS")]
    if not consumers:
        out.note("STREAMER_ENABLED_CONSUMERS is not set: a console sink")
        consumers = ["console"]
    for consumer in dict.fromkeys(consumers):
        if consumer == "redis":
            out.table("[[sinks]]", [("type", "redis"), ("inputs", sink_inputs),
                                    *redis_items], redis_comments)
        elif consumer == "websocket":
            out.table("[[sinks]]", [("type", "websocket"), ("inputs", sink_inputs),
                                    *_websocket_items(e, out)])
        elif consumer == "console":
            out.table("[[sinks]]", [("type", "console"), ("inputs", sink_inputs),
                                    ("format", "json")])
        else:
            out.note(f"STREAMER_ENABLED_CONSUMERS: {consumer!r} has no equivalent; left out")
    if e.get_bool("STREAMER_STORAGE_ENABLED", False):
        items = [("type", "storage"), ("inputs", sink_inputs), *redis_items,
                 ("channels", channels)]
        if intervals:
            items.append(("intervals", intervals))
        if "tickers" not in out_streams and "price" in out_streams:
            items.append(("price_from", "price"))
        size = e.get_int("STREAMER_STORAGE_BUFFER_FLUSH_SIZE")
        if size is not None and size > 0:
            items.append(("flush_size", size))
        interval = e.get_float("STREAMER_STORAGE_BUFFER_FLUSH_INTERVAL")
        if interval is not None and interval >= 0:
            items.append(("flush_interval", interval))
        out.table("[[sinks]]", items, [*redis_comments, "keys carry the older streamer's "
                                       "interval labels (1d, 1w): key_labels = \"lower\""])
    # -- what was not used ------------------------------------------------------------------
    for name in sorted(env):
        if name.startswith("STREAMER_") and name not in e.used:
            if "__" in name:
                out.note(f"{name}: an override of this streamer; it still applies at run time")
            elif name in OLD_VARIABLES:
                out.note(f"{name}: has no effect with these settings")
            else:
                out.note(f"{name}: not a variable of the older streamer; ignored")
    head = [f"# streamer.toml written by `streamer migrate-env` from {source_name}.",
            "# Check it with `streamer check -c streamer.toml`; reference: docs/config.md.",
            "# Secrets stay in the environment: keep the .env (e.g. docker compose env_file).",
            "# metrics = \"127.0.0.1:9464\" in [streamer] serves /metrics, /healthz, /readyz."]
    if out.notes:
        head.append("#")
        head.append("# Without an exact equivalent:")
        head.extend(f"#   - {n}" for n in out.notes)
    body = ["", "[streamer]", *(f"{k} = {_toml(v)}" for k, v in settings), *out.lines]
    return "\n".join(head + body) + "\n"


def _websocket_items(e: _Env, out: _Out) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    host = e.get_str("STREAMER_WEBSOCKET_HOST")
    if host is not None:
        items.append(("host", host))
    port = e.get_int("STREAMER_WEBSOCKET_PORT")
    if port is not None:
        items.append(("port", port))
    path = e.get_str("STREAMER_WEBSOCKET_PATH")
    if path is not None:
        items.append(("path", path if path.startswith("/") else "/" + path))
    user = e.get_str("STREAMER_WSS_AUTH_USER")
    key = e.get_str("STREAMER_WSS_AUTH_KEY")
    if user is not None:
        items.append(("auth_user", user))
    if key is not None:
        items.append(("auth_key_env", "STREAMER_WSS_AUTH_KEY"))
    if (user is None) != (key is None):
        out.note("STREAMER_WSS_AUTH_USER and STREAMER_WSS_AUTH_KEY go together: auth needs "
                 "both")
    if (user is None or key is None) and host not in (None, "127.0.0.1", "localhost", "::1"):
        # The older streamer served anyone on any host; this sink refuses to start so
        # (`streamer check` too), and the migrated file must be one that runs.
        items = [("host", "127.0.0.1") if k == "host" else (k, v) for k, v in items]
        out.note(f"STREAMER_WEBSOCKET_HOST={host!r} without authentication: the websocket "
                 "sink refuses to start on a non-loopback host without auth_user and "
                 "$STREAMER_WSS_AUTH_KEY; it listens on 127.0.0.1 until both are set (or "
                 "put a TLS-terminating proxy in front: docker-compose.traefik.yml)")
    return items


# -- the command -----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """``streamer migrate-env [PATH]`` (PATH defaults to ./.env)."""
    parser.add_argument("path", nargs="?", default=".env",
                        help="the older streamer's .env (default: ./.env)")


def main(args: argparse.Namespace) -> int:
    try:
        text = Path(args.path).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"{args.path}: cannot read the file: {exc.strerror or exc}", file=sys.stderr)
        return 2
    sys.stdout.write(migrate(parse_dotenv(text), source_name=args.path))
    return 0
