"""The drain-all TLS stream against a tiny raw TLS server on 127.0.0.1 (handshake, tickets,
close_notify both ways, EOF without close_notify, garbage), and the Bybit source recovering
from a TLS-level failure behind a proxy in front of the fake Bybit over wss://."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio
from bybit.harness import Collector, make_source

from fakebybit import FakeBybit, make_ssl_contexts
from streamer_bybit.tls import TLSStream, open_tls_over_tcp_stream
from streamer_bybit.transport import HandshakeError, WebSocket


class ServerTLS:
    """The server side of one connection, driven by hand over memory BIOs."""

    def __init__(self, tcp: trio.SocketStream, context: ssl.SSLContext) -> None:
        self.tcp = tcp
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.tcp.send_all(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                data = await self.tcp.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("client left during the handshake") from None
                self.incoming.write(data)
        await self.flush()  # Finished, and TLS 1.3 session tickets right after it

    async def send(self, data: bytes) -> None:
        self.obj.write(data)
        await self.flush()

    async def receive(self) -> bytes:
        """Application bytes; ``b""`` on close_notify; raises EOFError on a bare EOF."""
        while True:
            try:
                return self.obj.read(65536)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            data = await self.tcp.receive_some(65536)
            if not data:
                raise EOFError
            self.incoming.write(data)


Handler = Callable[[ServerTLS], Awaitable[None]]


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server, client, _ca_file = make_ssl_contexts(str(tmp_path_factory.mktemp("tls")))
    return server, client


async def serve_tls(
    context: ssl.SSLContext,
    handler: Handler,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    async def on_connection(tcp: trio.SocketStream) -> None:
        server = ServerTLS(tcp, context)
        try:
            await server.handshake()
            await handler(server)
        except (trio.BrokenResourceError, ssl.SSLError, EOFError):
            pass
        finally:
            await tcp.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, on_connection, 0, host="127.0.0.1"))
        task_status.started(listeners[0].socket.getsockname()[1])


async def test_handshake_sends_sni_and_the_data_flows_both_ways(contexts) -> None:
    server_ctx, client_ctx = contexts
    names: list[str | None] = []
    server_ctx.sni_callback = lambda _obj, name, _ctx: names.append(name)  # type: ignore[assignment,misc]

    async def echo(server: ServerTLS) -> None:
        while data := await server.receive():
            await server.send(data.upper())

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(serve_tls, server_ctx, echo)
                stream = await open_tls_over_tcp_stream("localhost", port, client_ctx)
                await stream.send_all(b"hello")
                assert await stream.receive_some() == b"HELLO"
                await stream.aclose()
                nursery.cancel_scope.cancel()
    finally:
        server_ctx.sni_callback = None
    assert names == ["localhost"]


async def test_hostname_is_verified(contexts) -> None:
    server_ctx, client_ctx = contexts

    async def idle(server: ServerTLS) -> None:
        await server.receive()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, idle)
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            stream = TLSStream(tcp, client_ctx, server_hostname="stream.bybit.com")
            with pytest.raises(trio.BrokenResourceError) as info:
                await stream.do_handshake()
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            assert "stream.bybit.com" in str(info.value.__cause__)
            await stream.aclose()
            # The WebSocket client reports it as a handshake failure (the source retries).
            with pytest.raises(HandshakeError, match="certificate verify failed"):
                await WebSocket.connect(f"wss://127.0.0.1:{port}/", ssl_context=None)
            nursery.cancel_scope.cancel()


async def test_session_tickets_after_the_handshake_are_not_data_or_eof(contexts) -> None:
    server_ctx, client_ctx = contexts
    asked = trio.Event()

    async def tickets_then_reply(server: ServerTLS) -> None:
        # handshake() already wrote the TLS 1.3 session tickets, on their own.
        assert await server.receive() == b"ask"
        await server.send(b"answer")
        await server.receive()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, tickets_then_reply)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            assert stream.ssl_object.version() == "TLSv1.3"
            got: list[bytes] = []

            async def receiver() -> None:
                got.append(await stream.receive_some())
                asked.set()

            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(b"ask")  # a send while another task receives
            await asked.wait()
            assert got == [b"answer"]
            session = stream.ssl_object.session
            assert session is not None and session.has_ticket  # the tickets were consumed
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_many_records_come_back_from_one_receive(contexts) -> None:
    server_ctx, client_ctx = contexts

    async def burst(server: ServerTLS) -> None:
        for i in range(50):
            server.obj.write(b"record %d;" % i)  # one TLS record each
        await server.flush()  # all in one socket write
        await server.receive()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, burst)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            want = b"".join(b"record %d;" % i for i in range(50))
            data = b""
            reads = 0
            while len(data) < len(want):
                data += await stream.receive_some()
                reads += 1
            assert data == want
            assert reads <= 3  # one socket read holds many records (usually all 50)
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_aclose_sends_close_notify(contexts) -> None:
    server_ctx, client_ctx = contexts
    seen: list[str] = []

    async def wait_for_close(server: ServerTLS) -> None:
        try:
            data = await server.receive()
            seen.append("close_notify" if data == b"" else f"data {data!r}")
        except EOFError:
            seen.append("bare EOF")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, wait_for_close)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            await stream.aclose()
            await stream.aclose()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()
            while not seen:
                await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    assert seen == ["close_notify"]


async def test_close_notify_from_the_peer_is_a_clean_eof(contexts) -> None:
    server_ctx, client_ctx = contexts

    async def say_bye(server: ServerTLS) -> None:
        await server.send(b"last words")
        try:
            server.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        await server.flush()
        await server.receive()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, say_bye)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            assert data == b"last words"
            assert await stream.receive_some() == b""
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_eof_without_close_notify_is_a_broken_connection(contexts) -> None:
    server_ctx, client_ctx = contexts

    async def cut(server: ServerTLS) -> None:
        record = b""
        server.obj.write(b"complete")
        complete = server.outgoing.read()
        server.obj.write(b"cut short by the peer")
        record = server.outgoing.read()
        await server.tcp.send_all(complete + record[:10])  # then TCP FIN, no close_notify

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, cut)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            data = b""
            with pytest.raises(trio.BrokenResourceError, match="without close_notify"):
                while True:
                    data += await stream.receive_some()
            assert data == b"complete"
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            await stream.aclose()
            nursery.cancel_scope.cancel()


GARBAGE = b"\x17\x03\x03\x00\x20" + b"\xab" * 32


async def garbage_after_a_record(server: ServerTLS) -> None:
    await server.send(b"fine")
    await server.tcp.send_all(GARBAGE + b"HTTP/1.1 200 OK")
    await server.receive()


async def record_and_garbage_in_one_segment(server: ServerTLS) -> None:
    server.obj.write(b"fine")
    await server.tcp.send_all(server.outgoing.read() + GARBAGE)
    await server.receive()


@pytest.mark.parametrize("behaviour", [garbage_after_a_record, record_and_garbage_in_one_segment])
async def test_garbage_from_the_peer_is_a_broken_connection(contexts, behaviour) -> None:
    """What was decrypted before the garbage comes out first (even from the same read),
    then the stream is broken, for receiving and sending."""
    server_ctx, client_ctx = contexts
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls, server_ctx, behaviour)
            stream = await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            data = b""
            with pytest.raises(trio.BrokenResourceError) as info:
                while True:
                    data += await stream.receive_some()
            assert data == b"fine"
            assert isinstance(info.value.__cause__, ssl.SSLError)
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(b"after")
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_eof_during_the_handshake(contexts) -> None:
    _server_ctx, client_ctx = contexts

    async def hang_up(tcp: trio.SocketStream) -> None:
        await tcp.receive_some(65536)  # the ClientHello
        await tcp.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            with pytest.raises(trio.BrokenResourceError, match="handshake failed"):
                await open_tls_over_tcp_stream("127.0.0.1", port, client_ctx)
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- the source over wss://
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
