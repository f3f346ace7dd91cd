"""A REST endpoint whose TLS breaks is one more REST failure: logged with its cause, retried
until the recovery deadline, reported as a trade gap; the source streams on (no crash)."""

from __future__ import annotations

import logging
import random
import ssl

import pytest
import trio
from bybit.harness import make_source, run_source

from streamer._backoff import Backoff
from streamer._events import Trade
from streamer_bybit.simulator import FakeBybit, make_ssl_contexts


class BrokenTlsRest:
    """An https "server" that breaks TLS: garbage instead of a handshake, or a real handshake
    and half an answer, then the TCP connection closes without close_notify."""

    def __init__(self, mode: str, server_context: ssl.SSLContext) -> None:
        self.mode = mode
        self.server_context = server_context
        self.port = 0
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        self.connections += 1
        try:
            if self.mode == "garbage":
                await tcp.receive_some(65536)  # the ClientHello
                await tcp.send_all(b"\x16\x03\x03\x00\x05garbage, not a ServerHello" * 4)
                return
            tls = trio.SSLStream(tcp, self.server_context, server_side=True)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await tls.receive_some(65536)
                if not chunk:
                    return
                request += chunk
            await tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"retCode\":0,")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(tcp)  # TCP FIN, no TLS close_notify


@pytest.mark.parametrize("mode", ["garbage", "ragged_eof"])
async def test_tls_broken_rest_is_a_reported_gap_not_a_crash(
    mode, tmp_path, collector, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    server_context, _client_context, ca_file = make_ssl_contexts(str(tmp_path))
    fake = FakeBybit(linear_symbols=["BTCUSDT"], seed=9)
    rest = BrokenTlsRest(mode, server_context)
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            await nursery.start(rest.serve)
            source = make_source(
                fake,
                symbols=["BTCUSDT"],
                rest_url=f"https://127.0.0.1:{rest.port}",
                ca_file=ca_file,
                recovery_deadline=10,
            )
            await run_source(nursery, source, collector)  # symbols unchecked: REST broken
            source.connections[0].backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))
            fake.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            fake.drop_connections()
            while source.connections[0].sessions < 2:
                await trio.sleep(0.01)
            fake.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(collector.gaps) == 2)
            fake.trade("linear", "BTCUSDT")  # the source streams on
            await collector.wait_for(lambda ev: len(ev) == 3)
            nursery.cancel_scope.cancel()
    assert [e.trade_id for e in collector.of(Trade)] == [
        t["i"] for t in fake.history("linear", "BTCUSDT")
    ]
    assert source.metrics["trade_gaps"] == 1
    # One failed symbol check, then the recovery asks at 0, 0.25, 0.75, 1.75, 3.75 and 7.75 s
    # after the resubscribe (its fixed retry schedule, no jitter); the next one (11.75 s) would
    # be past recovery_deadline (10 s). Each ask is one TLS connection: a broken one is never
    # reused.
    assert source.metrics["rest_failures"] == 1 + 6
    assert source.metrics["recovery_retries"] == 5
    assert rest.connections == 1 + 6
    assert not collector.gaps[-1].complete
    assert "streaming BTCUSDT unchecked" in caplog.text
    assert "(REST failed: BrokenResourceError: " in caplog.text  # the cause, named
    assert "Traceback" not in caplog.text
