"""Which Redis failures the writer retries and which end the sink."""

from __future__ import annotations

import redis

#: Failures worth a retry on a new connection (a protocol error too: the reply stream is
#: out of step, the connection is closed, the next write starts afresh).
TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.InvalidResponse, OSError)
#: Server replies that mean "not now" (failover, loading), worth a retry.
TRANSIENT_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "NOPERM")


class Transient(Exception):
    """A reply that asks us to retry later."""


def is_auth_error(exc: BaseException) -> bool:
    if isinstance(exc, redis.AuthenticationError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_AUTH_REPLIES)
