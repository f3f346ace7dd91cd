"""Decoding what a client sends: JSON, or the one-line reason it is not usable.

Nesting deep enough to exhaust the decoder's recursion (``[[[[...`` well inside
``max_client_message``) is refused like any other malformed message: it must cost the client
one counted failure, never the server a traceback.
"""

from __future__ import annotations

from typing import Any

import msgspec


class BadClientJSON(ValueError):
    """A client message that is not usable JSON; the text says why, in a few words."""


def decode_client_json(raw: str | bytes) -> Any:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise BadClientJSON("invalid JSON") from None
    except RecursionError:
        raise BadClientJSON("JSON nested too deeply") from None
