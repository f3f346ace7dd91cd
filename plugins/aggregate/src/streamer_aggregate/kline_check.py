"""The outcome of comparing one built kline with its reference (``klines.verify``)."""

from __future__ import annotations

from typing import Any

import msgspec

#: The fields compared, in the order ``KlineCheck`` carries them.
FIELDS = ("open", "high", "low", "close", "volume")


class KlineCheck(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one comparison (wire ``data_type`` ``kline_check``): our values, the
    reference's (``ref_*``) and the fields that differ beyond the tolerance."""

    channel: str
    symbol: str
    interval: int
    timestamp: int
    ok: bool
    mismatched: str  # comma-separated field names, "" when ok
    ours: tuple[float, ...]
    reference: tuple[float, ...]

    data_type = "kline_check"

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "symbol": self.symbol,
            "interval": self.interval,
            "timestamp": self.timestamp,
            "ok": self.ok,
            "mismatched": self.mismatched,
        }
        for name, value in zip(FIELDS, self.ours, strict=True):
            d[name] = value
        for name, value in zip(FIELDS, self.reference, strict=True):
            d[f"ref_{name}"] = value
        return d


def differs(a: float, b: float, tolerance: float) -> bool:
    if a == b:
        return False
    return not abs(a - b) <= tolerance * max(abs(a), abs(b))


__all__ = ["FIELDS", "KlineCheck", "differs"]
