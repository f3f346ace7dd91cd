"""Wire envelopes shared between clients, with their JSON text encoded at most once.

An envelope's ``data`` is encoded once, lazily, and the text is cached on the object, so every
client that receives the same envelope sends the same string. Coalescing several envelopes of
one channel and data type splices their cached ``data`` texts instead of re-encoding: the
result is byte-for-byte what :func:`streamer.wire.encode` gives for the merged envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamer.wire import encode

_headers: dict[tuple[str, str], str] = {}


def _header(channel: str, data_type: str) -> str:
    """``{"channel":..,"data_type":..,"data":`` exactly as wire.encode writes it."""
    header = _headers.get((channel, data_type))
    if header is None:
        head = encode({"channel": channel, "data_type": data_type}).decode()
        header = _headers[(channel, data_type)] = head[:-1] + ',"data":'
    return header


class Envelope:
    """One ``{"channel", "data_type", "data"}`` message; treat as immutable once queued."""

    __slots__ = ("_data_text", "_text", "channel", "data", "data_type", "key")

    def __init__(self, channel: str, data_type: str, data: list[dict[str, Any]]) -> None:
        self.channel = channel
        self.data_type = data_type
        self.data = data
        self.key = (channel, data_type)
        self._data_text: str | None = None
        self._text: str | None = None

    @classmethod
    def from_wire(cls, envelope: dict[str, Any]) -> Envelope:
        return cls(envelope["channel"], envelope["data_type"], envelope["data"])

    def data_text(self) -> str:
        text = self._data_text
        if text is None:
            text = self._data_text = encode(self.data).decode()  # type: ignore[arg-type]
        return text

    def text(self) -> str:
        text = self._text
        if text is None:
            text = self._text = _header(self.channel, self.data_type) + self.data_text() + "}"
        return text


def coalesced_text(envelopes: Sequence[Envelope]) -> str:
    """The text of one envelope holding the data of ``envelopes`` (same key), in order."""
    if len(envelopes) == 1:
        return envelopes[0].text()
    first = envelopes[0]
    parts = [text[1:-1] for text in (env.data_text() for env in envelopes) if len(text) > 2]
    return _header(first.channel, first.data_type) + "[" + ",".join(parts) + "]}"
