"""Clients that hold connections of the ops listener on purpose (open and silent, or sending
their request a byte at a time) cannot starve /healthz, from one address or from many; the
per-address ceiling and the request deadlines close them (real sockets on 127.0.0.0/8)."""

from __future__ import annotations

import pytest
import trio

from ops.httpget import get, get_json
from ops.opsserver import connect_from, serving, wait_until
from streamer._metrics import Sample
from streamer._metrics_http import OpsLimits
from streamer._ops_admission import Admission

SLOW_CLIENTS = 100
PROBES = 20
#: The start of a request whose head never ends (no blank line), sent a byte at a time.
PARTIAL = b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200


async def trickle(stream: trio.SocketStream, data: bytes, interval: float) -> None:
    try:
        for byte in data:
            await stream.send_all(bytes([byte]))
            await trio.sleep(interval)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # closed by the server: evicted or refused


@pytest.mark.parametrize(
    ("addresses", "held", "refused", "evicted"),
    [pytest.param(1, 8, 92, 0, id="one-address"),
     # 5 per address: all admitted; past 64 each new one evicts the oldest, and the first probe
     # once more (the others find the place it left).
     pytest.param(20, 63, 0, 37, id="20-addresses")])
async def test_healthz_answers_every_probe_through_100_slow_connections(
        addresses: int, held: int, refused: int, evicted: int) -> None:
    # Real time (the probes' 1 s bound is the point); deadlines longer than the test, so every
    # slow client still holds its place while the probes run.
    limits = OpsLimits(head_timeout=60.0, request_timeout=60.0)
    sources = [f"127.0.0.{2 + i}" for i in range(addresses)]
    async with serving(limits) as ops, trio.open_nursery() as slow:
        with trio.fail_after(30):
            streams = [await connect_from(sources[i % addresses], ops.port)
                       for i in range(SLOW_CLIENTS)]
            for stream in streams[1::2]:  # every other one sends a request a byte at a time
                slow.start_soon(trickle, stream, PARTIAL, 0.05)
            admission = ops.admission
            await wait_until(lambda: len(admission) + admission.refused + admission.evicted
                             == SLOW_CLIENTS)
            for _ in range(PROBES):
                with trio.fail_after(1):
                    status, doc = await get_json(ops.port, "/healthz")
                assert (status, doc["status"]) == (200, "alive")
                await wait_until(lambda: len(admission) == held)  # the probe has left
        assert (admission.refused, admission.evicted) == (refused, evicted)
        assert (ops.head_timeouts, ops.request_timeouts) == (0, 0)
        slow.cancel_scope.cancel()
        for stream in streams:
            await stream.aclose()


async def test_the_connection_past_the_per_address_ceiling_is_closed_unanswered(
        autojump_clock) -> None:
    limits = OpsLimits()
    per_address = limits.max_connections_per_address
    async with serving(limits) as ops:
        start = trio.current_time()
        held = [await connect_from("127.0.0.2", ops.port) for _ in range(per_address)]
        await wait_until(lambda: ops.connections == per_address)
        extra = await connect_from("127.0.0.2", ops.port)
        assert await extra.receive_some(100) == b""  # closed at once, nothing said
        assert (ops.connections, ops.admission.refused) == (per_address, 1)
        # Another address is let in and answered.
        status, body = await get(ops.port, "/metrics")
        assert status == 200
        assert b"streamer_ops_connections_refused_total 1.0" in body
        # A place given back can be taken again by that address.
        await held.pop().aclose()
        await wait_until(lambda: ops.connections == per_address - 1)
        held.append(await connect_from("127.0.0.2", ops.port))
        await wait_until(lambda: ops.connections == per_address)
        assert ops.admission.refused == 1
        assert trio.current_time() - start < limits.head_timeout  # nothing timed out meanwhile
        for stream in (*held, extra):
            await stream.aclose()


async def test_a_slow_loris_is_answered_408_at_the_head_deadline(autojump_clock) -> None:
    limits = OpsLimits()
    async with serving(limits) as ops:
        start = trio.current_time()
        stream = await connect_from("127.0.0.2", ops.port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle, stream, PARTIAL, 0.5)
            reply = b""
            while chunk := await stream.receive_some(4096):
                reply += chunk
            assert trio.current_time() - start == pytest.approx(limits.head_timeout, abs=1e-6)
            nursery.cancel_scope.cancel()
        assert reply.startswith(b"HTTP/1.1 408")
        assert ops.head_timeouts == 1
        await stream.aclose()


#: Samples of the padding probe: makes /metrics ~8 MB, far more than the socket buffers of a
#: client that does not read (its receive buffer pinned small) and of the server can hold.
PADDING = 60_000


async def test_a_client_slow_in_and_out_is_closed_at_the_request_deadline(autojump_clock) -> None:
    limits = OpsLimits()
    async with serving(limits) as ops:
        node = next(iter(ops.pipeline.nodes.values()))
        node.context.metrics.add_probe(
            lambda: [Sample("padding", i, {"i": str(i)}) for i in range(PADDING)])
        start = trio.current_time()
        stream = await connect_from("127.0.0.2", ops.port, receive_buffer=4096)
        # The head arrives a byte at a time, complete just within its deadline ...
        head = b"GET /metrics HTTP/1.1\r\n\r\n"
        for byte in head:
            await stream.send_all(bytes([byte]))
            await trio.sleep((limits.head_timeout - 1) / len(head))
        # ... and the answer is never read: the server's write waits for room.
        await trio.sleep_until(start + limits.request_timeout - 0.01)
        assert (ops.connections, ops.request_timeouts) == (1, 0)
        await trio.sleep(0.02)
        assert (ops.connections, ops.request_timeouts) == (0, 1)
        await stream.aclose()


async def test_the_oldest_connection_still_reading_is_evicted_first() -> None:
    admission = Admission(max_connections=3, max_per_address=3)
    first, second, third = (admission.enter(f"127.0.0.{i}", 10.0) for i in (2, 3, 4))
    assert first is not None and second is not None and third is not None
    first.reading = False  # being answered
    assert admission.enter("127.0.0.5", 10.0) is not None
    assert (second.evicted, second.scope.cancel_called, first.evicted) == (True, True, False)
    assert (len(admission), admission.evicted, admission.open_from("127.0.0.3")) == (3, 1, 0)
    admission.leave(second)  # its handler ending later gives back nothing twice
    assert len(admission) == 3
    for conn in admission:
        conn.reading = False
    assert admission.enter("127.0.0.6", 10.0) is not None
    assert first.evicted and admission.evicted == 2  # none reading: the oldest of all
