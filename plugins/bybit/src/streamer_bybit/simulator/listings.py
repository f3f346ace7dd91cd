"""Listings and delistings while clients are connected: the instrument list changes, the
WebSocket says nothing (as on Bybit: a client learns of it from instruments-info)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .market import Instrument
    from .server import FakeBybit


def list_symbol(fake: FakeBybit, category: str, symbol: str) -> Instrument:
    """A new instrument, status ``Trading``: in the next instruments-info answer."""
    return fake.add_symbol(category, symbol)


def delist_symbol(fake: FakeBybit, category: str, symbol: str, status: str = "Closed") -> None:
    """``symbol`` stops trading (``Closed``, or e.g. ``Settling`` / ``Delivering``): left out
    of the Trading list, refused to new subscribes, no more trades made by the tests."""
    fake._inst(category, symbol).status = status


__all__ = ["delist_symbol", "list_symbol"]
