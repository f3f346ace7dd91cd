"""Who may hold a connection: counts of connections not yet authenticated (in total and per
client address) and the recent authentication failures of each (client address, user).

Sockets that never authenticate are counted apart from served clients, with a limit of their
own, so they can never take the places of users who authenticate; one address holds at most
``max_unauthenticated_per_address`` of them, at most an eighth of the pool (the config checks
it), so fewer than eight addresses can never turn another away.

Failures are counted per (address, user) over a window, the user being the configured one or
"any other name" (a name never seen costs no memory of its own). A pair past
``max_auth_failures`` is refused outright until its window ends, which caps guessing at that
many tries per address and window; another address, or a wrong user name from the same
address, is never refused because of it. The locked pair is refused even with the right key:
letting a right key through would tell the guesser that it guessed right, and the cap would
be gone.
"""

from __future__ import annotations

from collections import OrderedDict

from streamer_websocket.config import WebSocketConfig

#: Addresses whose failures are remembered at most; the least recently failing is forgotten
#: first, so the record itself is bounded whatever the number of sources.
MAX_TRACKED_ADDRESSES = 4096

#: (client address, whether the configured user was named): what failures are counted by.
FailureKey = tuple[str, bool]


class Admission:
    def __init__(self, config: WebSocketConfig) -> None:
        self.config = config
        #: Connections between handshake and authentication, in total and per address.
        self.unauthenticated = 0
        self.unauthenticated_by_address: dict[str, int] = {}
        #: Failed authentications since start, all addresses.
        self.failures_total = 0
        # (address, user) -> (start of its current window, failures in it)
        self._failures: OrderedDict[FailureKey, tuple[float, int]] = OrderedDict()

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

    def _window(self, key: FailureKey, now: float) -> tuple[float, int]:
        entry = self._failures.get(key)
        if entry is None or now - entry[0] >= self.config.auth_failure_window:
            return now, 0
        return entry

    def locked_out(self, key: FailureKey, now: float) -> bool:
        """True while ``key`` has used up its failures for the current window."""
        return self._window(key, now)[1] >= self.config.max_auth_failures

    def record_failure(self, key: FailureKey, now: float) -> int:
        """Count a failure of ``key``; return its failures in the current window."""
        self.failures_total += 1
        start, count = self._window(key, now)
        self._failures[key] = (start, count + 1)
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_ADDRESSES:
            self._failures.popitem(last=False)
        return count + 1
