"""A first connection to NATS ends within its timeout even when every attempt is refused.

nats-py retries a refused first connection forever (``max_reconnect_attempts = -1``, which
the sink and source need for later reconnects). ``asyncio.wait_for`` around it could wait
forever: a cancel that lands as an attempt is refused comes back as that attempt's
``OSError``, which nats-py's loop catches and goes on. Seen as a sink test that hung."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from server_process import free_port

from streamer_nats.connection import connect_within

TRIALS = 60


def test_refused_connections_end_within_their_timeout():
    """Attempts every millisecond against a closed port, timeouts at seeded random offsets
    between them: each call raises TimeoutError and returns within 0.5 s (real time; the
    plain ``asyncio.wait_for`` hung in about a third of such trials on Python 3.11)."""

    async def errors(_: Exception) -> None:
        pass

    options = {"servers": [f"nats://127.0.0.1:{free_port()}"], "connect_timeout": 2.0,
               "reconnect_time_wait": 0.001, "max_reconnect_attempts": -1,
               "allow_reconnect": True, "error_cb": errors}
    rng = random.Random(7)

    async def trials() -> list[float]:
        took = []
        for _ in range(TRIALS):
            timeout = rng.uniform(0.01, 0.05)
            started = time.monotonic()
            # the outer bound turns a hang into a failure, not a stuck test
            done, _ = await asyncio.wait({asyncio.ensure_future(connect_within(options,
                                                                               timeout))},
                                         timeout=2.0)
            if not done:
                took.append(float("inf"))
                break
            with pytest.raises(TimeoutError, match="no connection within"):
                done.pop().result()
            took.append(time.monotonic() - started - timeout)
        return took

    loop = asyncio.new_event_loop()
    try:
        took = loop.run_until_complete(trials())
    finally:
        loop.close()  # a hung attempt is left pending, not cancelled (it might not end)
    assert max(took) < 0.5, sorted(took)[-5:]
    assert len(took) == TRIALS
