"""The ``postgres`` sink's options, each checked by its field validator (the config loader
reports every bad one at once, with its path).

The password never lives in streamer.toml: ``password_env`` names the environment variable
that holds it, read when the sink connects. A ``dsn`` carrying one is refused, in both of
libpq's spellings (``postgresql://user:secret@host/db`` and ``password=secret``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from streamer import redact_url, url_secret
from streamer.validators import (
    at_least,
    at_least_field,
    between,
    greater_than,
    unwritable_dir,
)

#: What the sink can keep, each in its own table.
DATA_TYPES = ("trades", "klines", "ticker")
#: A schema name we accept: a plain lower-case SQL identifier (no quoting surprises).
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
EXCHANGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_URL_SCHEMES = ("postgresql://", "postgres://")
_KEYWORD_PASSWORD = re.compile(r"(^|\s)password\s*=", re.IGNORECASE)


def _dsn(instance: Any, _: attrs.Attribute[str], value: str) -> None:
    if value.startswith(_URL_SCHEMES):
        secret = url_secret(value)
        if secret is not None:
            raise ValueError(
                f"dsn must not contain {secret} (it would sit in streamer.toml); put the "
                f"password in the environment variable named by password_env "
                f"(${instance.password_env})"
            )
        return
    if _KEYWORD_PASSWORD.search(value):
        raise ValueError(
            "dsn must not contain password=... (it would sit in streamer.toml); put the "
            f"password in the environment variable named by password_env "
            f"(${instance.password_env})"
        )
    if "=" not in value:
        raise ValueError(
            f"dsn {value!r}: expected postgresql://user@host:port/dbname or libpq's "
            "'host=... dbname=...' form"
        )


def _schema(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not SCHEMA_NAME.fullmatch(value):
        raise ValueError(
            f"{attribute.name} {value!r}: expected a lower-case SQL name (letters, digits, _; "
            "not starting with a digit; at most 63 characters)"
        )
    if value.startswith("pg_"):
        raise ValueError(f"{attribute.name} {value!r}: names starting with pg_ are reserved")


def _exchange(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not EXCHANGE_NAME.fullmatch(value):
        raise ValueError(f"{attribute.name} {value!r}: expected 1-32 letters, digits, _ . -")


def _data_types(_: Any, attribute: attrs.Attribute[list[str]], value: list[str]) -> None:
    unknown = [v for v in value if v not in DATA_TYPES]
    if unknown:
        raise ValueError(f"{attribute.name}: unknown {', '.join(map(repr, unknown))}; "
                         f"expected some of {', '.join(DATA_TYPES)}")
    if not value:
        raise ValueError(f"{attribute.name} must name at least one of {', '.join(DATA_TYPES)}")


def _not_empty(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


@attrs.define
class PostgresSinkConfig:
    #: ``postgresql://user@host:port/dbname`` or ``host=... port=... dbname=... user=...``;
    #: never with a password (see password_env). libpq's PG* variables fill what is left out.
    dsn: str = attrs.field(default="postgresql://streamer@127.0.0.1:5432/streamer",
                           validator=_dsn)
    #: Name of the environment variable holding the password (unset or empty: none sent).
    password_env: str = attrs.field(default="STREAMER_POSTGRES_PASSWORD", validator=_not_empty)
    #: The schema of the sink's tables (created by the migrations).
    schema: str = attrs.field(default="market", validator=_schema)
    #: The ``exchange`` column of every row this sink writes.
    exchange: str = attrs.field(default="bybit", validator=_exchange)
    #: What to store: ``trades``, ``klines`` (closed ones only), ``ticker``.
    data_types: list[str] = attrs.field(factory=lambda: ["trades", "klines"],
                                        validator=_data_types)
    #: Run the migrations at start (as ``streamer db migrate`` does).
    migrate: bool = True
    #: Write once this many rows are buffered ...
    flush_size: int = attrs.field(default=5000, validator=at_least(1))
    #: ... or the oldest waited this long (s).
    flush_interval: float = attrs.field(default=0.05, validator=at_least(0))
    #: Rows held in memory while the database is down or slow; beyond it they go to the
    #: spool (``spool_dir``) or, without one, are dropped and counted.
    max_buffer: int = attrs.field(default=200_000, validator=at_least(1))
    #: Folder of the on-disk spool (None: no spool).
    spool_dir: str | None = None
    #: Bytes the spool may take on disk; beyond it new rows are dropped and counted.
    spool_max_bytes: int = attrs.field(default=1 << 30, validator=at_least(1 << 16))
    connect_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    #: A write (one transaction) that takes longer is abandoned and retried on a new
    #: connection (a hung server); the retry stores each row once all the same.
    write_timeout: float = attrs.field(default=30.0, validator=greater_than(0))
    reconnect_initial: float = attrs.field(default=0.5, validator=greater_than(0))
    reconnect_max: float = attrs.field(default=30.0, validator=at_least_field("reconnect_initial"))
    #: At shutdown, how long to keep trying to write what is buffered; what is left then
    #: goes to the spool, or is counted lost without one.
    shutdown_timeout: float = attrs.field(default=10.0, validator=greater_than(0))
    #: Offer the stored trades to ``klines.from_trades`` for first candles (asked before the
    #: source's history); false: transforms ask only the source.
    serve_history: bool = True
    #: How long a history question (a first candle's trades) waits for a segment another
    #: writer is extending right now to reach the asked time (s); 0: never wait.
    history_wait: float = attrs.field(default=2.0, validator=between(0, 60))

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        if self.spool_dir is not None:
            problem = unwritable_dir(self.spool_dir)
            if problem is not None:
                return [f"spool_dir: {problem}"]
        return []

    def describe(self) -> str:
        """Where we connect, for log lines (never includes a password)."""
        if self.dsn.startswith(_URL_SCHEMES):
            return redact_url(self.dsn)
        return self.dsn
