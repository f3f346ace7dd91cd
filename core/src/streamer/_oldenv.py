"""The older Bybit klines streamer's ``.env`` (``STREAMER_*`` variables): read it, and warn
about its variables, which this streamer does not read (it reads streamer.toml).

docs/migrating.md lists every variable and what it becomes; :mod:`streamer._migrate_env`
turns a ``.env`` into a streamer.toml.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

#: Every variable the older streamer's README documents, with what it meant.
OLD_VARIABLES: dict[str, str] = {
    "STREAMER_BYBIT_SYMBOLS": "comma-separated symbols",
    "STREAMER_BYBIT_LOAD_ALL_SYMBOLS": "stream every trading instrument",
    "STREAMER_BYBIT_SYMBOLS_LIMIT": "keep the first N symbols",
    "STREAMER_BYBIT_SOCKET_POOL_SIZE": "WebSocket connections the topics are spread over",
    "STREAMER_KLINE_INTERVALS": "kline intervals, e.g. 1m,5m,1h,4h,1D",
    "STREAMER_AGGREGATOR_WAITER_MODE_ENABLED": "close candles a delay after the boundary",
    "STREAMER_AGGREGATOR_WAITER_LATENCY_MS": "that delay, 80-150 ms",
    "STREAMER_KLINES_MODE": "true: Bybit's kline stream instead of klines built from trades",
    "STREAMER_ENABLE_KLINES_STREAM": "publish klines",
    "STREAMER_ENABLE_PRICE_STREAM": "publish prices",
    "STREAMER_ENABLE_TICKER_STREAM": "publish tickers",
    "STREAMER_ENABLE_TRADES_STREAM": "publish trades",
    "STREAMER_ENABLE_SPOT_STREAM": "add the spot channel beside linear",
    "STREAMER_REDIS_HOST": "Redis host",
    "STREAMER_REDIS_PORT": "Redis port",
    "STREAMER_REDIS_USER": "Redis ACL user",
    "STREAMER_REDIS_PASSWORD": "Redis password (a secret)",
    "STREAMER_REDIS_BASE": "Redis database number",
    "STREAMER_REDIS_MAIN_KEY": "prefix of every Redis channel and key",
    "STREAMER_WEBSOCKET_HOST": "WebSocket server interface",
    "STREAMER_WEBSOCKET_PORT": "WebSocket server port",
    "STREAMER_WEBSOCKET_PATH": "WebSocket server path",
    "STREAMER_WSS_AUTH_KEY": "WebSocket auth key (a secret)",
    "STREAMER_WSS_AUTH_USER": "WebSocket auth user",
    "STREAMER_ENABLED_CONSUMERS": "outputs: redis,websocket,console",
    "STREAMER_STORAGE_ENABLED": "keep snapshots in Redis",
    "STREAMER_STORAGE_BUFFER_FLUSH_SIZE": "snapshot writes buffered before a flush",
    "STREAMER_STORAGE_BUFFER_FLUSH_INTERVAL": "seconds between snapshot flushes",
    "STREAMER_LOG_LEVEL": "log level",
    "STREAMER_LOG_FORMAT": "log format",
    "STREAMER_LOG_FILE": "log file",
    "STREAMER_HOST": "public domain name in its Traefik compose file",
}

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines as docker compose reads them: ``#`` comments, ``export``, single or
    double quotes, a `` #`` comment after an unquoted value. Later lines win."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = _LINE.match(raw)
        if match is None:
            continue
        key, value = match.groups()
        if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace('\\"', '"').replace("\\n", "\n")
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].strip()
        out[key] = value
    return out


def referenced_env(options: Iterable[Any]) -> set[str]:
    """Variable names a pipeline reads through ``*_env`` options (those are not ignored)."""
    names = set()
    for opts in options:
        if attrs.has(type(opts)):
            for field in attrs.fields(type(opts)):
                value = getattr(opts, field.name, None)
                if field.name.endswith("_env") and isinstance(value, str):
                    names.add(value)
    return names


def ignored_old_variables(environ: Mapping[str, str], used: Iterable[str] = ()) -> list[str]:
    """The older streamer's variables set in ``environ`` that nothing reads."""
    skip = set(used)
    return sorted(k for k in environ if k in OLD_VARIABLES and k not in skip)


def warn_ignored_old_env(environ: Mapping[str, str], log: logging.Logger,
                         options: Iterable[Any] = ()) -> list[str]:
    """Log one warning naming the older streamer's variables that are set but ignored."""
    names = ignored_old_variables(environ, referenced_env(options))
    if names:
        log.warning(
            "ignored: %s %s the older streamer's .env and %s not read here (the pipeline "
            "comes from streamer.toml); `streamer migrate-env .env` writes an equivalent "
            "streamer.toml", ", ".join(names), "is from" if len(names) == 1 else "are from",
            "is" if len(names) == 1 else "are",
        )
    return names
