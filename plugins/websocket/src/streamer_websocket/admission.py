"""Who may hold a connection: counts of connections not yet authenticated (in total and per
source address) and each address's recent authentication failures.

Sockets that never authenticate are counted apart from served clients, with a small limit of
their own, so they can never take the places of users who authenticate. Failures are counted
per address over a window; an address past ``max_auth_failures`` is refused outright until its
window ends, which caps guessing at that many tries per window whatever else happens.
"""

from __future__ import annotations

from collections import OrderedDict

from streamer_websocket.config import WebSocketConfig

#: Addresses whose failures are remembered at most; the least recently failing is forgotten
#: first, so the record itself is bounded whatever the number of sources.
MAX_TRACKED_ADDRESSES = 4096


class Admission:
    def __init__(self, config: WebSocketConfig) -> None:
        self.config = config
        #: Connections between handshake and authentication, in total and per address.
        self.unauthenticated = 0
        self.unauthenticated_by_address: dict[str, int] = {}
        #: Failed authentications since start, all addresses.
        self.failures_total = 0
        # address -> (start of its current window, failures in it)
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    # -- unauthenticated connections -------------------------------------------------------

    def enter_unauthenticated(self, address: str) -> bool:
        """Take a place for a connection still to authenticate; False when none is free."""
        config = self.config
        held = self.unauthenticated_by_address.get(address, 0)
        if (self.unauthenticated >= config.max_unauthenticated
                or held >= config.max_unauthenticated_per_address):
            return False
        self.unauthenticated += 1
        self.unauthenticated_by_address[address] = held + 1
        return True

    def leave_unauthenticated(self, address: str) -> None:
        self.unauthenticated -= 1
        held = self.unauthenticated_by_address[address] - 1
        if held:
            self.unauthenticated_by_address[address] = held
        else:
            del self.unauthenticated_by_address[address]

    # -- failures --------------------------------------------------------------------------

    def _window(self, address: str, now: float) -> tuple[float, int]:
        entry = self._failures.get(address)
        if entry is None or now - entry[0] >= self.config.auth_failure_window:
            return now, 0
        return entry

    def locked_out(self, address: str, now: float) -> bool:
        """True while ``address`` has used up its failures for the current window."""
        return self._window(address, now)[1] >= self.config.max_auth_failures

    def record_failure(self, address: str, now: float) -> int:
        """Count a failure of ``address``; return its failures in the current window."""
        self.failures_total += 1
        start, count = self._window(address, now)
        self._failures[address] = (start, count + 1)
        self._failures.move_to_end(address)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)
        return count + 1
