"""Everything one Bybit connection sends downstream goes through its :class:`Outlet`.

Two tasks send: the reader (each socket read's decoded events, :meth:`Outlet.send`) and gap
recovery (a symbol's recovered trades when it settles, :meth:`Outlet.settle`, and the stream
gaps, :meth:`Outlet.gap`). Both pass the connection's :class:`~streamer_bybit.hold_book.
HoldBook` (None without gap recovery), which decides what goes now, what waits and what is
dropped, and the one ``emit``. While recovery runs beside the reader, each book step and its
emit are done under one lock, so a symbol's recovered trades and its later live ones cannot
overtake each other; the rest of the time the reader is the only sender and takes no lock (a
lock costs a scheduler round trip per read).

The capture (``capture_dir``) is told what the outlet does besides the socket reads (the
symbols held, the trades recovered, the gaps), so that a replay does the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from streamer import Emit, Event, StreamGap, Trade
from streamer_bybit.hold_book import HoldBook

if TYPE_CHECKING:
    from streamer_bybit.capture import CaptureTap

EMIT_GRACE = 5.0  # seconds a recovered batch may take to emit once the session is ending


class Outlet:
    """One connection's way downstream; see the module doc."""

    def __init__(
        self,
        emit: Emit,
        book: HoldBook | None,
        capture: CaptureTap | None,
        *,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self.emit = emit
        self.book = book
        self.capture = capture
        self.logger = logger
        self.name = name
        self._lock = trio.Lock()
        self._shared = False  # recovery runs beside the reader: take the lock

    @contextmanager
    def shared(self) -> Iterator[None]:
        """While in it, a second task (gap recovery) sends too."""
        self._shared = True
        try:
            yield
        finally:
            self._shared = False

    async def send(self, events: list[Event]) -> None:
        """One socket read's events (not empty): through the hold book, then downstream."""
        book = self.book
        if book is None:
            await self.emit(events)
        elif self._shared:
            async with self._lock:
                await self._send(book, events)
        else:  # _send inlined: the reader's usual path, one coroutine less per read
            out = book.live(events)
            if book.over:
                out = self._release_held(book) + out
            if out:
                await self.emit(out)

    async def _send(self, book: HoldBook, events: list[Event]) -> None:
        out = book.live(events)
        if book.over:
            out = self._release_held(book) + out
        if out:
            await self.emit(out)

    def _release_held(self, book: HoldBook) -> list[Event]:
        self.logger.warning(
            "%s: recovery held more than %d live trades; emitting them now, the recovered "
            "trades follow as they are found", self.name, book.max_held)
        return book.release_held()

    def hold(self, symbols: list[str]) -> None:
        """A session after a lost one: hold the live trades of ``symbols`` until each is
        recovered."""
        assert self.book is not None
        self.book.hold(symbols)
        if self.capture is not None:
            self.capture.holding(list(self.book.held), self.book.max_held)

    async def settle(self, symbol: str, recovered: list[Trade]) -> None:
        """``symbol``'s recovery settled with ``recovered``: they go downstream, then its held
        live trades."""
        book = self.book
        assert book is not None
        async with self._lock:
            h = book.held.get(symbol)
            quiet = h is None or h.first_live is None
            if self.capture is not None:
                self.capture.recovered(symbol, recovered, quiet=quiet,
                                       holding=h is not None and h.holding)
            batch = book.settle(symbol, recovered, quiet=quiet)
            if batch:
                # Noted as delivered already: a connection lost right now must not cancel the
                # emit half-way (bounded, so that a blocked sink cannot hold a shutdown).
                with trio.CancelScope(shield=True), trio.move_on_after(EMIT_GRACE):
                    await self.emit(batch)

    async def release_all(self) -> None:
        """Stopping in the middle of a recovery: every held trade goes now."""
        if self.book is not None:
            batch = self.book.release_all()
            if batch:
                await self.emit(batch)

    async def gap(self, gap: StreamGap) -> None:
        """A stream gap opened or closed."""
        if self.capture is not None:
            self.capture.gap(gap)
        await self.emit.gap(gap)


__all__ = ["EMIT_GRACE", "Outlet"]
