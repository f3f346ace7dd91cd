"""Client authentication: HTTP basic auth at the handshake, or the older streamer's first
message ``{"user": ..., "key": ...}``. Both compare user and key in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Mapping, Sequence

from streamer import FatalError
from streamer_websocket.config import WebSocketConfig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class Credentials:
    """The user and key a client must present."""

    __slots__ = ("_key", "_user")

    def __init__(self, user: str, key: str) -> None:
        self._user = user.encode()
        self._key = key.encode()

    def check(self, user: object, key: object) -> bool:
        if not isinstance(user, str) or not isinstance(key, str):
            return False
        # Both comparisons always run, so timing tells nothing about which one failed.
        user_ok = hmac.compare_digest(user.encode(), self._user)
        key_ok = hmac.compare_digest(key.encode(), self._key)
        return user_ok & key_ok

    def names_user(self, user: object) -> bool:
        """Whether ``user`` is the configured user: failures are counted per user."""
        return isinstance(user, str) and hmac.compare_digest(user.encode(), self._user)


def parse_basic(authorization: bytes) -> tuple[str | None, str | None]:
    """(user, key) of an ``Authorization: Basic ...`` header value; (None, None) if it is
    not one."""
    scheme, _, encoded = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, key = decoded.partition(":")
    if not sep:
        return None, None
    return user, key


def authorization_header(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            return value
    return None


def resolve_credentials(
    config: WebSocketConfig, environ: Mapping[str, str], sink_name: str
) -> Credentials | None:
    """The credentials to enforce, or ``None`` when auth is off (loopback only).

    Raises FatalError when auth is required or half-configured: serving market data on a
    public interface without auth, or an auth_user without its key, is never what was meant.
    """
    key = environ.get(config.auth_key_env, "")
    if config.auth_user is not None:
        if not key:
            raise FatalError(
                f"websocket sink {sink_name!r}: auth_user is set but the environment variable "
                f"{config.auth_key_env} holding the key is empty or unset"
            )
        return Credentials(config.auth_user, key)
    if not is_loopback(config.host):
        raise FatalError(
            f"websocket sink {sink_name!r}: host {config.host!r} is not loopback, so clients "
            f"must authenticate: set auth_user and export the key in {config.auth_key_env}"
        )
    return None
