"""Where NATS is and who we are: options shared by the ``nats`` sink and source.

Credentials never live in streamer.toml. They come from environment variables, read when the
sink or source connects: a ``.creds`` file path (``STREAMER_NATS_CREDS``), a token
(``STREAMER_NATS_TOKEN``) or a user and password (``STREAMER_NATS_USER`` /
``STREAMER_NATS_PASSWORD``); the variable names themselves can be changed in the config.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs

from streamer.validators import greater_than

_SCHEMES = ("nats", "tls")


def _as_list(value: Any) -> list[str]:
    """``url`` as given (one string or a list of strings) as a list of servers."""
    return [value] if isinstance(value, str) else list(value)


def _urls(_: Any, __: attrs.Attribute[Any], value: Any) -> None:
    if not (isinstance(value, str) or (isinstance(value, (list, tuple))
                                       and all(isinstance(u, str) for u in value))):
        raise ValueError(f"url: expected a string or a list of strings, got {value!r}")
    urls = _as_list(value)
    if not urls:
        raise ValueError("url: give at least one nats://host:port")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(f"url: expected nats://host:port or tls://host:port, got {url!r}")
        if parts.username or parts.password:
            raise ValueError(
                f"url {url!r} must not carry credentials (they would sit in streamer.toml); "
                "use the STREAMER_NATS_* environment variables"
            )


#: Characters a NATS subject token may not contain (plus anything outside printable ASCII).
_BAD_TOKEN = re.compile(r"[^A-Za-z0-9_\-]")


def token(text: str) -> str:
    """``text`` made safe as one subject token ('.', '*', '>', spaces become '_'). Here,
    not with the messages (:mod:`streamer_nats.messages`, msgspec), since the sink's options
    check their ``subject_prefix`` with it when the plugin registers."""
    if text.isalnum() and text.isascii():
        return text
    return _BAD_TOKEN.sub("_", text) or "_"


def name_without_wildcards(_: Any, attribute: attrs.Attribute[str], value: str) -> None:
    """A stream or consumer name: NATS refuses '.', '*', '>' and spaces in it."""
    if not value or any(c in value for c in ".*> "):
        raise ValueError(f"{attribute.name}: expected a name without '.', '*', '>' or "
                         f"spaces, got {value!r}")


#: Seconds between cancels of a connect attempt that outlived its timeout.
_RECANCEL_S = 0.05


async def connect_within(options: dict[str, Any], timeout: float) -> Any:
    """``nats.connect(**options)`` within ``timeout`` seconds (on the asyncio loop).

    Not ``asyncio.wait_for``: with endless reconnects nats-py retries a refused first
    connection in a loop that catches ``Exception``, and on Python 3.11 a cancel that lands
    as an attempt fails comes back as that attempt's ``OSError`` (the inner ``wait_for``'s
    race), so the loop goes on and ``wait_for`` waits for it forever. This cancels the
    attempt again until it has ended. A connection made just as time ran out is kept.
    """
    # Not at module level: the config checks import this module at registration, and
    # `streamer check` must not load asyncio or nats-py (tests/core/test_lazy_imports.py).
    import asyncio

    import nats

    attempt = asyncio.ensure_future(nats.connect(**options))
    try:
        await asyncio.wait({attempt}, timeout=timeout)
    finally:
        while not attempt.done():
            attempt.cancel()
            await asyncio.wait({attempt}, timeout=_RECANCEL_S)
    if attempt.cancelled():
        raise TimeoutError(f"no connection within {timeout:g}s")
    return attempt.result()


@attrs.define
class NatsConnectionConfig:
    """Where NATS is, shared by the sink and the source. Every option is checked by its field
    validator, so the config loader reports all bad ones at once, each with its path."""

    #: One server or a list of strings (``nats://host:port``); the client picks one and fails over.
    url: Any = attrs.field(default="nats://127.0.0.1:4222", validator=_urls)
    #: JetStream stream name.
    stream: str = attrs.field(default="BYBIT", validator=name_without_wildcards)
    #: Environment variables holding the credentials (unset or empty: not used).
    creds_env: str = "STREAMER_NATS_CREDS"
    token_env: str = "STREAMER_NATS_TOKEN"
    user_env: str = "STREAMER_NATS_USER"
    password_env: str = "STREAMER_NATS_PASSWORD"
    #: Seconds to wait for one connection attempt.
    connect_timeout: float = attrs.field(default=2.0, validator=greater_than(0))
    #: Seconds between reconnect attempts (nats-py retries forever).
    reconnect_wait: float = attrs.field(default=0.5, validator=greater_than(0))
    #: Seconds to wait for a JetStream API reply (stream info, consumer create).
    api_timeout: float = attrs.field(default=5.0, validator=greater_than(0))

    @property
    def servers(self) -> list[str]:
        return _as_list(self.url)

    def describe(self) -> str:
        return ",".join(self.servers)

    def connect_options(self, logger: logging.Logger, closing: Callable[[], bool]
                        ) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (credentials from the environment);
        ``closing()`` true silences the disconnect warning of our own close."""

        async def on_error(exc: Exception) -> None:
            logger.warning("NATS (%s): %s: %s", self.describe(), type(exc).__name__, exc)

        async def on_disconnected() -> None:
            if not closing():
                logger.warning("NATS: disconnected from %s; reconnecting", self.describe())

        async def on_reconnected() -> None:
            logger.info("NATS: reconnected")

        options: dict[str, Any] = {
            "servers": self.servers,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        creds = os.environ.get(self.creds_env)
        token = os.environ.get(self.token_env)
        user = os.environ.get(self.user_env)
        if creds:
            options["user_credentials"] = creds
        if token:
            options["token"] = token
        if user:
            options["user"] = user
            options["password"] = os.environ.get(self.password_env) or ""
        return options
