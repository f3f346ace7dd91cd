"""Which connections the operations listener (``[streamer] metrics``) keeps open.

Two ceilings, both counted over every open connection, whatever it is doing:

- ``max_per_address`` per source address: one more from that address is closed at once,
  unanswered (counted in ``refused``). One address can therefore never take more than that
  many places, and it cannot push anyone out either.
- ``max_connections`` in all: one more takes the place of the oldest connection still
  reading its request head, or of the oldest of all when none is (counted in ``evicted``).

Why evict rather than refuse: a health probe or a Prometheus scrape sends its request as
soon as it is connected and is answered within milliseconds, while a connection that holds
a place on purpose (open and silent, or sending its request a byte at a time) is old by the
time the probe comes. Refusing would let such connections starve ``/healthz`` and get the
process restarted by its orchestrator; evicting the oldest lets the probe in. To push a
probe out, clients from ``max_connections / max_per_address`` addresses or more would have
to open ``max_connections`` new connections within the few milliseconds it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import attrs
import trio

log = logging.getLogger("streamer.metrics")


@attrs.define(eq=False)
class OpsConnection:
    """One open connection. Cancelling ``scope`` closes it, whatever it is doing."""

    address: str
    opened: float
    scope: trio.CancelScope
    #: True until its request head has been read.
    reading: bool = True
    #: True once closed to make room for a newer connection.
    evicted: bool = False


class Admission:
    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        #: Open connections, oldest first (a dict keeps insertion order; values unused).
        self._open: dict[OpsConnection, None] = {}
        self._per_address: dict[str, int] = {}
        #: Connections closed unanswered: their address had ``max_per_address`` open.
        self.refused = 0
        #: Connections closed to make room for a newer one.
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[OpsConnection]:
        """The open connections, oldest first."""
        return iter(list(self._open))

    def open_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    def enter(self, address: str, deadline: float) -> OpsConnection | None:
        """A place for a new connection from ``address`` that must be closed by
        ``deadline`` (trio time); None when its address has no place left."""
        if self.open_from(address) >= self.max_per_address:
            self.refused += 1
            return None
        if len(self._open) >= self.max_connections:
            self._evict()
        conn = OpsConnection(address, trio.current_time(), trio.CancelScope(deadline=deadline))
        self._open[conn] = None
        self._per_address[address] = self.open_from(address) + 1
        return conn

    def leave(self, conn: OpsConnection) -> None:
        """Give back the place of ``conn`` (nothing if it was evicted already)."""
        if self._open.pop(conn, False) is None:
            held = self._per_address[conn.address] - 1
            if held:
                self._per_address[conn.address] = held
            else:
                del self._per_address[conn.address]

    def _evict(self) -> None:
        oldest = next((c for c in self._open if c.reading), None) or next(iter(self._open))
        self.leave(oldest)
        oldest.evicted = True
        oldest.scope.cancel()
        self.evicted += 1
        log.warning("metrics: %d connections open (metrics_max_connections); closing the "
                    "oldest, from %s, open %.1f s%s", self.max_connections, oldest.address,
                    trio.current_time() - oldest.opened,
                    " without a complete request" if oldest.reading else "")
