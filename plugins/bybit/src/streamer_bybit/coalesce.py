"""When the reader's coalescing wait (``coalesce_ms``) follows a read: only while it pays.

The wait lets messages gather in the socket so that one wake-up carries several. It costs a
wake-up of its own (the timer's) per read, so it pays only while a read after it carries
enough messages: at 250 msg/s evenly paced (a book every 4 ms) a 5 ms wait gathers ~1.3
messages a read, and reading each message as it comes costs about as much as waiting for it.
Hence two states, with hysteresis so that a rate near the limit does not flap between them:

- **on** (a session starts so): the wait follows every read under
  :data:`~streamer_bybit.connection.COALESCE_SKIP`. The average of messages per read (all
  reads, an exponential average over ~8 reads) is kept; below :data:`OFF_BELOW` (2) the
  wait is turned off. A wait that gathered nothing turns it off at once (traffic sparser
  than the wait: a quiet market).
- **off**: every read is made as soon as data arrives (one wake-up per write of the server).
  What a wait would gather is measured as the messages read within the last ``coalesce``
  seconds: from :data:`ON_FROM` (4) of them (three intervals between messages within one
  wait: a wait would gather ~3) the wait is on again.

At 1,000 msg/s a wait of 5 ms gathers ~5 messages: on, always. At 250 msg/s it gathers
~1.3: off after ~11 reads, and 5 ms hold at most 2 messages 4 ms apart, so it stays off. At
1 msg/s the first wait gathers nothing: off. Going down, the wait turns off below about
2 / (``coalesce`` + a read's handling) messages a second (~360 msg/s at 5 ms); going up, on
from 3 / ``coalesce`` (600 msg/s at 5 ms); in between, the state stays as it is.
"""

from __future__ import annotations

from collections import deque
from typing import Final

#: The wait is turned off when the average read carries fewer messages than this.
OFF_BELOW: Final = 2.0
#: The wait is turned on again when this many messages were read within ``coalesce``.
ON_FROM: Final = 4
#: Weight of a read in the average of messages per read (~8 reads).
WEIGHT: Final = 1 / 8


class WaitPolicy:
    """One connection's state: whether a read is followed by the coalescing wait."""

    __slots__ = ("_recent", "_recent_messages", "coalesce", "gathered", "on")

    def __init__(self, coalesce: float) -> None:
        self.coalesce = coalesce
        #: The wait follows a (small) read.
        self.on = True
        #: While on: the average of messages per read.
        self.gathered = float(ON_FROM)
        #: While off: (trio time, messages) of the reads within the last ``coalesce``.
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_messages = 0

    def read(self, now: float, messages: int, found_empty: bool) -> bool:
        """Note a read of ``messages`` at ``now`` (``found_empty``: the wait before it
        gathered nothing); whether the wait follows it."""
        if self.on:
            if found_empty:
                self._off(now, messages)
                return False
            gathered = self.gathered + (messages - self.gathered) * WEIGHT
            self.gathered = gathered
            if gathered < OFF_BELOW:
                self._off(now, messages)
                return False
            return True
        recent = self._recent
        recent.append((now, messages))
        total = self._recent_messages + messages
        horizon = now - self.coalesce
        while recent[0][0] <= horizon:
            total -= recent.popleft()[1]
        if total >= ON_FROM:
            self.on = True
            self.gathered = float(total)
            recent.clear()
            total = 0
        self._recent_messages = total
        return self.on

    def _off(self, now: float, messages: int) -> None:
        self.on = False
        self._recent.clear()
        self._recent.append((now, messages))
        self._recent_messages = messages
