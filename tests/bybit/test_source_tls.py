"""The Bybit source over wss:// recovers from a TLS-level failure: a proxy in front of the
fake Bybit injects garbage mid TLS stream, and the source reconnects and streams again."""

from __future__ import annotations

from functools import partial

import trio
from bybit.harness import Collector, make_source

from streamer_bybit.simulator import FakeBybit, make_ssl_contexts


async def _proxy(
    target_port: int,
    inject: trio.Event,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """TCP proxy to the fake. Once ``inject`` is set, the first connection gets garbage
    in place of the server's bytes (mid TLS stream); later connections pass through."""
    connections = 0

    async def pipe(source: trio.SocketStream, sink: trio.SocketStream, poison: bool) -> None:
        async with trio.open_nursery() as inner:
            if poison:

                async def corrupt() -> None:
                    await inject.wait()
                    await sink.send_all(b"\x17\x03\x03\x00\x40" + b"\x5a" * 64)

                inner.start_soon(corrupt)
            try:
                while data := await source.receive_some(65536):
                    if poison and inject.is_set():
                        continue  # drop the real bytes from now on
                    await sink.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            inner.cancel_scope.cancel()
        await sink.aclose()

    async def handler(client: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        server = await trio.open_tcp_stream("127.0.0.1", target_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, client, server, False)
            nursery.start_soon(pipe, server, client, first)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        task_status.started(listeners[0].socket.getsockname()[1])


async def test_the_source_reconnects_after_tls_garbage(tmp_path, collector: Collector) -> None:
    server_ctx, _client_ctx, ca_file = make_ssl_contexts(str(tmp_path))
    fake = FakeBybit(linear_symbols=["BTCUSDT"], ssl_context=server_ctx)
    inject = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            proxy_port = await nursery.start(_proxy, fake.port, inject)
            source = make_source(
                fake,
                symbols=["BTCUSDT"],
                ca_file=ca_file,
                url=f"wss://127.0.0.1:{proxy_port}/v5/public/linear",
            )
            await nursery.start(source.run, collector)
            fake.trade("linear", "BTCUSDT", count=2)
            await collector.wait_for(lambda ev: len(ev) >= 2)
            inject.set()
            # The garbage breaks the TLS stream: the source reconnects through the proxy
            # (a clean second connection) and streams again.
            while fake.total_connections_opened < 2 or not fake.connections:
                await trio.sleep(0.01)
            await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            fake.trade("linear", "BTCUSDT", count=3)
            await collector.wait_for(lambda ev: len(ev) >= 5)
            nursery.cancel_scope.cancel()
    assert fake.total_connections_opened == 2
