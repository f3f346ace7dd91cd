"""The older Bybit klines streamer's ``.env`` (``STREAMER_*`` variables): read it, and warn
about its variables, which this streamer does not read (it reads streamer.toml): the plugin's
``streamer_environment_warnings``.

docs/migrating.md lists every variable and what it becomes; :mod:`streamer_bybit.migrate_env`
turns a ``.env`` into a streamer.toml.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

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


def ignored_old_variables(environ: Mapping[str, str], used: Iterable[str] = ()) -> list[str]:
    """The older streamer's variables set in ``environ`` that nothing reads."""
    skip = set(used)
    return sorted(k for k in environ if k in OLD_VARIABLES and k not in skip)


def ignored_warning(environ: Mapping[str, str], read: Iterable[str] = ()) -> list[str]:
    """One line naming the older streamer's variables set in ``environ`` and not ``read`` by
    the pipeline (through a ``*_env`` option); none when there are none."""
    names = ignored_old_variables(environ, read)
    if not names:
        return []
    one = len(names) == 1
    return [f"ignored: {', '.join(names)} {'is from' if one else 'are from'} the older "
            f"streamer's .env and {'is' if one else 'are'} not read here (the pipeline comes "
            "from streamer.toml); `streamer migrate-env .env` writes an equivalent "
            "streamer.toml"]
