"""The drain-all TLS stream (``streamer.net.TLSStream``) against a tiny raw TLS server on
127.0.0.1 (handshake, tickets, close_notify both ways, EOF without close_notify, garbage) and
against ``trio.SSLStream`` (random records and reads). The Bybit source recovering from a
TLS-level failure is in tests/bybit/test_source_tls.py."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tls_certs import make_ssl_contexts

from streamer.net import HandshakeError, TLSStream, WebSocket, open_tls_over_tcp_stream


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


# ---------------------------------------------------------------- properties vs trio.SSLStream
class ScriptedWire(trio.abc.Stream):
    """The client's transport, in memory, with a server-side ``SSLObject`` behind it.

    During the handshake what the client sends reaches the server at once and the server's
    answer comes back whole. Everything the server produces after its handshake (the TLS 1.3
    session tickets, then the scripted records, then close_notify if asked) is collected in
    ``post``; :meth:`deliver` hands its first ``length`` bytes to the client in the pieces
    ``cuts`` makes (each piece split further by a smaller ``max_bytes``), then EOF.
    """

    def __init__(self, server_ctx: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.server = server_ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.server_done = False
        self.pieces: list[bytes] = []
        self.post = b""
        self.ended = False
        self.reads = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.incoming.write(bytes(data))
        if not self.server_done:
            try:
                self.server.do_handshake()
                self.server_done = True
            except ssl.SSLWantReadError:
                pass
            out = self.outgoing.read()
            if self.server_done:
                self.post += out
            elif out:
                self.pieces.append(out)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        if not self.pieces:
            assert self.ended, "the client waits for bytes the script never sends"
            return b""
        piece = self.pieces.pop(0)
        if max_bytes is not None and len(piece) > max_bytes:
            piece, rest = piece[:max_bytes], piece[max_bytes:]
            self.pieces.insert(0, rest)
        return piece

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def write_record(self, data: bytes) -> int:
        """One TLS record (``data`` <= 16 KiB); returns where it ends in ``post``."""
        self.server.write(data)
        self.post += self.outgoing.read()
        return len(self.post)

    def close_notify(self) -> None:
        try:
            self.server.unwrap()
        except ssl.SSLWantReadError:
            pass  # close_notify written; the client's is not awaited
        self.post += self.outgoing.read()

    def deliver(self, length: int, cuts: list[int]) -> None:
        self.pieces.extend(split(self.post[:length], cuts))
        self.ended = True


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    edges = [0, *points, len(wire)]
    return [wire[a:b] for a, b in pairwise(edges) if b > a]


@dataclass
class TLSOutcome:
    data: bytes
    end: str  # "eof" (clean close_notify) or "broken"
    max_piece: int  # the longest single receive_some result


@dataclass
class Layout:
    tickets_end: int  # where the session tickets end in ``post``
    record_ends: list[int]  # where each scripted record ends
    total: int  # len(post), close_notify included if sent
    length: int  # how much of it was delivered before EOF


async def read_scripted(
    make_client: Callable[[ScriptedWire], trio.abc.Stream],
    server_ctx: ssl.SSLContext,
    records: list[bytes],
    close_notify: bool,
    cut_at: int | None,
    cuts: list[int],
    max_bytes: int | None,
) -> tuple[TLSOutcome, Layout]:
    """One connection: handshake, script, then receive until EOF or broken."""
    wire = ScriptedWire(server_ctx)
    client = make_client(wire)
    await client.do_handshake()  # type: ignore[attr-defined]
    tickets_end = len(wire.post)
    record_ends = [wire.write_record(r) for r in records]
    if close_notify:
        wire.close_notify()
    total = len(wire.post)
    length = total if cut_at is None else cut_at % (total + 1)
    wire.deliver(length, cuts)
    got: list[bytes] = []
    end = "eof"
    try:
        while chunk := await client.receive_some(max_bytes):
            got.append(chunk)
    except trio.BrokenResourceError:
        end = "broken"
    await trio.aclose_forcefully(client)
    outcome = TLSOutcome(b"".join(got), end, max((len(c) for c in got), default=0))
    return outcome, Layout(tickets_end, record_ends, total, length)


def expected_outcome(records: list[bytes], close_notify: bool, layout: Layout
                     ) -> tuple[bytes, str]:
    """What a faithful TLS stream yields: every record that arrived whole (after the whole
    tickets), and a clean end only if close_notify arrived whole."""
    if layout.length < layout.tickets_end:
        return b"", "broken"
    arrived = zip(records, layout.record_ends, strict=True)
    data = b"".join(r for r, end in arrived if end <= layout.length)
    clean = close_notify and layout.length == layout.total
    return data, "eof" if clean else "broken"


def compare_with_sslstream(contexts, records: list[bytes], close_notify: bool,
                           cut_at: int | None, cuts: list[int], max_bytes: int | None) -> None:
    server_ctx, client_ctx = contexts

    def ours(wire: ScriptedWire) -> trio.abc.Stream:
        return TLSStream(wire, client_ctx, server_hostname="localhost")

    def trios(wire: ScriptedWire) -> trio.abc.Stream:
        return trio.SSLStream(wire, client_ctx, server_hostname="localhost")

    async def both() -> None:
        script = (records, close_notify, cut_at, cuts, max_bytes)
        got, layout = await read_scripted(ours, server_ctx, *script)
        ref, ref_layout = await read_scripted(trios, server_ctx, *script)
        # The same record layout on both connections (only the keys differ), so the cut
        # positions fall at the same places in it.
        assert layout == ref_layout
        want = expected_outcome(records, close_notify, layout)
        assert (ref.data, ref.end) == want  # (the reference itself is right)
        assert (got.data, got.end) == want
        if max_bytes is not None:
            assert got.max_piece <= max_bytes
            assert ref.max_piece <= max_bytes

    trio.run(both)


def record_payload(index: int, size: int) -> bytes:
    stamp = f"{index}:".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


record_sizes = st.lists(
    st.one_of(st.integers(1, 300), st.integers(1, 16384), st.sampled_from([1, 16383, 16384])),
    max_size=10,
)
read_limits = st.one_of(
    st.none(), st.integers(1, 70_000), st.sampled_from([1, 2, 100, 16384, 65536])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=record_sizes,
    close_notify=st.booleans(),
    cut_at=st.one_of(st.none(), st.integers(0, 10**6)),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
    max_bytes=read_limits,
)
def test_random_records_and_reads_match_sslstream(
    contexts, sizes: list[int], close_notify: bool, cut_at: int | None, cuts: list[int],
    max_bytes: int | None,
) -> None:
    records = [record_payload(i, n) for i, n in enumerate(sizes)]
    compare_with_sslstream(contexts, records, close_notify, cut_at, cuts, max_bytes)


@pytest.mark.parametrize("close_notify", [True, False])
def test_eof_at_every_position_matches_sslstream(contexts, close_notify: bool) -> None:
    """Three small records (and close_notify): EOF after every byte from a few bytes before
    the tickets' end to the end, each position read whole and in 7-byte reads."""
    server_ctx, client_ctx = contexts
    records = [b"first", b"second record", b"3"]

    async def layout() -> Layout:
        _, found = await read_scripted(
            lambda w: TLSStream(w, client_ctx, server_hostname="localhost"),
            server_ctx, records, close_notify, None, [], None)
        return found

    full = trio.run(layout)
    for position in range(full.tickets_end - 3, full.total + 1):
        for max_bytes in (None, 7):
            compare_with_sslstream(contexts, records, close_notify, position, [position - 1],
                                   max_bytes)


async def test_receive_some_rejects_a_max_bytes_below_one(contexts) -> None:
    server_ctx, client_ctx = contexts
    wire = ScriptedWire(server_ctx)
    stream = TLSStream(wire, client_ctx, server_hostname="localhost")
    await stream.do_handshake()
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        await stream.receive_some(0)


async def test_bytes_beyond_max_bytes_come_with_the_next_call_without_a_socket_read(
    contexts,
) -> None:
    server_ctx, client_ctx = contexts
    wire = ScriptedWire(server_ctx)
    stream = TLSStream(wire, client_ctx, server_hostname="localhost")
    await stream.do_handshake()
    for i in range(4):
        wire.write_record(b"%d" % i * 10)
    wire.deliver(len(wire.post), [])  # tickets and all four records in one piece
    reads = wire.reads
    assert await stream.receive_some(15) == b"0" * 10 + b"1" * 5
    assert wire.reads == reads + 1
    assert await stream.receive_some(20) == b"1" * 5 + b"2" * 10 + b"3" * 5
    assert await stream.receive_some() == b"3" * 5
    assert wire.reads == reads + 1  # the rest came out of OpenSSL, no socket read
    with pytest.raises(trio.BrokenResourceError, match="without close_notify"):
        await stream.receive_some()
