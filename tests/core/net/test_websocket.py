"""The transport's text-frame fast path (``MessageReader``) against websockets' protocol alone,
and the ``WebSocket`` client over real sockets (the fake Bybit, ws:// and wss://)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from streamer.net import MAX_MESSAGE, WebSocket, WebSocketClosed
from streamer.net._frames import MessageReader

URI = parse_uri("ws://127.0.0.1:1/x")


# ---------------------------------------------------------------- frame generation
@st.composite
def text_sizes(draw: st.DrawFn) -> int:
    return draw(
        st.one_of(
            st.integers(0, 130),
            st.integers(120, 70_000),
            st.sampled_from([0, 125, 126, 127, 65535, 65536, 65537, 100_000]),
        )
    )


def payload(index: int, size: int) -> bytes:
    stamp = f"{index}:".encode()
    return (stamp * (size // len(stamp) + 1))[:size]


@dataclass
class Script:
    wire: bytes  # what a server wrote, unmasked
    messages: list[bytes] = field(default_factory=list)  # the text messages, in order
    close_code: int = 1000


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    script = Script(b"")
    for index in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "text", "text", "binary", "ping", "fragmented"]))
        if kind == "text":
            data = payload(index, draw(text_sizes()))
            server.send_text(data)
            script.messages.append(data)
        elif kind == "binary":
            server.send_binary(payload(index, draw(st.integers(0, 300))))
        elif kind == "ping":
            server.send_ping(payload(index, draw(st.integers(0, 125))))
        else:
            parts = [payload(index * 10 + i, draw(text_sizes())) for i in range(3)]
            server.send_text(parts[0], fin=False)
            if draw(st.booleans()):
                server.send_ping(b"between fragments")
            server.send_continuation(parts[1], fin=False)
            server.send_continuation(parts[2], fin=True)
            script.messages.append(b"".join(parts))
    script.close_code = draw(st.sampled_from([1000, 1001, 4000]))
    server.send_close(script.close_code, "bye")
    script.wire = b"".join(server.data_to_send())
    return script


def split(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    edges = [0, *points, len(wire)]
    return [wire[a:b] for a, b in pairwise(edges) if b > a]


# ---------------------------------------------------------------- the two readers
@dataclass
class Outcome:
    messages: list[bytes]
    close_code: int | None
    state: State
    sent: int  # bytes the client protocol queued for the server (pongs, close reply)


def through_protocol_alone(reads: list[bytes]) -> Outcome:
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    messages: list[bytes] = []
    fragments: list[bytes] = []
    text = False
    close_code = None
    sent = 0
    for data in reads:
        protocol.receive_data(data)
        for frame in protocol.events_received():
            assert isinstance(frame, Frame)
            if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
                text = frame.opcode is Opcode.TEXT
                fragments = [frame.data]
            elif frame.opcode is Opcode.CONT:
                fragments.append(frame.data)
            elif frame.opcode is Opcode.CLOSE:
                close_code = Close.parse(frame.data).code
                continue
            else:
                continue
            if frame.fin and text:
                messages.append(b"".join(fragments))
        sent += sum(len(chunk) for chunk in protocol.data_to_send())
    return Outcome(messages, close_code, protocol.state, sent)


def through_message_reader(reads: list[bytes]) -> Outcome:
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    reader = MessageReader(protocol)
    messages: list[bytes] = []
    sent = 0
    for data in reads:
        messages.extend(reader.receive_data(data))
        sent += sum(len(chunk) for chunk in protocol.data_to_send())
    code = reader.closed.code if reader.closed is not None else None
    return Outcome(messages, code, protocol.state, sent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts(), cuts=st.lists(st.integers(0, 10**7), max_size=40))
def test_fast_path_yields_what_websockets_alone_yields(script: Script, cuts: list[int]) -> None:
    reads = split(script.wire, cuts)
    expected = through_protocol_alone(reads)
    got = through_message_reader(reads)
    assert expected.messages == script.messages  # (the reference itself is right)
    assert got.messages == script.messages
    assert got.close_code == expected.close_code == script.close_code
    assert got.state is expected.state
    assert got.sent == expected.sent  # the same pongs and close reply, byte for byte in size


def test_one_byte_reads_of_long_frames() -> None:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    big = payload(1, 70_000)
    server.send_text(b"a" * 126)
    server.send_text(big)
    server.send_text(b"")
    wire = b"".join(server.data_to_send())
    reader = MessageReader(ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE))
    messages: list[bytes] = []
    for i in range(len(wire)):
        messages.extend(reader.receive_data(wire[i : i + 1]))
    assert messages == [b"a" * 126, big, b""]


def _unmasked_text(data: bytes, first: int = 0x81) -> bytes:
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + data
    return bytes((first, 127)) + n.to_bytes(8, "big") + data


def _masked_text(data: bytes) -> bytes:
    assert len(data) < 126
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return bytes((0x81, 0x80 | len(data))) + key + masked


def _fails_like_websockets(bad_frame: bytes) -> None:
    wire = _unmasked_text(b"before") + bad_frame + _unmasked_text(b"after")
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    reader = MessageReader(protocol)
    messages = reader.receive_data(wire)
    alone = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    alone.receive_data(wire)
    assert messages == [b"before"]  # nothing after the bad frame
    assert protocol.state is alone.state is State.CLOSING
    assert protocol.close_sent is not None and alone.close_sent is not None
    assert protocol.close_sent.code == alone.close_sent.code == 1002  # protocol error
    assert str(protocol.parser_exc) == str(alone.parser_exc)
    assert reader.receive_data(_unmasked_text(b"later")) == []  # discarded, as websockets does


def test_a_masked_frame_from_the_server_is_a_protocol_error() -> None:
    _fails_like_websockets(_masked_text(b"masked"))


def test_a_frame_with_rsv_bits_is_a_protocol_error() -> None:
    _fails_like_websockets(_unmasked_text(b"rsv1", first=0xC1))
    _fails_like_websockets(_unmasked_text(b"rsv3", first=0x91))


def test_an_oversize_text_frame_goes_to_websockets_and_fails_with_1009() -> None:
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=100)
    reader = MessageReader(protocol, max_size=100)
    header = bytes((0x81, 126)) + (200).to_bytes(2, "big")
    assert reader.receive_data(_unmasked_text(b"ok") + header + b"x" * 50) == [b"ok"]
    assert protocol.close_sent is not None and protocol.close_sent.code == 1009
    assert reader.receive_data(b"x" * 150 + _unmasked_text(b"later")) == []


@pytest.mark.parametrize("size", [18, 200, 70_000])  # 7-, 16- and 64-bit lengths
def test_a_text_frame_inside_a_fragmented_message_is_a_protocol_error(size: int) -> None:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.send_text(b"part", fin=False)
    wire = b"".join(server.data_to_send()) + _unmasked_text(b"x" * size)
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    assert MessageReader(protocol).receive_data(wire) == []
    assert protocol.close_sent is not None and protocol.close_sent.code == 1002


def test_eof_inside_a_frame_is_handed_to_websockets() -> None:
    protocol = ClientProtocol(URI, state=State.OPEN, max_size=MAX_MESSAGE)
    reader = MessageReader(protocol)
    assert reader.receive_data(_unmasked_text(b"whole") + _unmasked_text(b"half")[:3]) == [
        b"whole"
    ]
    assert reader.receive_eof() == []
    assert protocol.state is State.CLOSED
    assert isinstance(protocol.parser_exc, EOFError)


# ---------------------------------------------------------------- over real sockets
async def _open_subscribed(fake, url: str, ssl_context=None) -> WebSocket:
    ws = await WebSocket.connect(url, ssl_context=ssl_context)
    await ws.send_text('{"op":"subscribe","args":["publicTrade.BTCUSDT"]}')
    await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
    return ws


async def _receive_until(ws: WebSocket, count: int) -> list[bytes]:
    messages: list[bytes] = []
    while len(messages) < count:
        messages.extend(await ws.receive())
    return messages


async def _mixed_frames_arrive_in_order(fake, url: str, ssl_context=None) -> None:
    sizes = [0, 125, 126, 65535, 65536, 200_000, 300]
    ws = await _open_subscribed(fake, url, ssl_context)
    try:
        messages = await _receive_until(ws, 1)  # the subscribe ack
        assert b'"op":"subscribe"' in messages[0]
        for i, size in enumerate(sizes):
            fake.send_raw("linear", payload(i, size))
            fake.send_raw("linear", b"\x00binary", binary=True)
        fake.trade("linear", "BTCUSDT")
        got = await _receive_until(ws, len(sizes) + 1)
        assert got[: len(sizes)] == [payload(i, size) for i, size in enumerate(sizes)]
        assert b"publicTrade.BTCUSDT" in got[-1]
        assert ws.binary_frames == len(sizes)
        fake.close_connections()
        while True:
            try:
                await ws.receive()
            except WebSocketClosed as exc:
                assert exc.code == 1000
                break
    finally:
        await ws.aclose()


async def test_frames_of_every_size_over_ws(fake_bybit) -> None:
    with trio.fail_after(15):
        await _mixed_frames_arrive_in_order(fake_bybit, fake_bybit.ws_url("linear"))


async def test_frames_of_every_size_over_wss_one_record_per_message(tmp_path) -> None:
    from streamer_bybit.simulator import FakeBybit, make_ssl_contexts

    server_ctx, client_ctx, _ca_file = make_ssl_contexts(str(tmp_path))
    fake = FakeBybit(linear_symbols=["BTCUSDT"], ssl_context=server_ctx)
    assert fake.one_record_per_message
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            await _mixed_frames_arrive_in_order(fake, fake.ws_url("linear"), client_ctx)
            nursery.cancel_scope.cancel()


async def _serve_raw_websocket(
    wire: bytes, task_status: trio.TaskStatus[tuple[int, list[int]]]
) -> None:
    """Accept one client, complete the upgrade with websockets' ServerProtocol, write
    ``wire`` in the same write as the 101 response, then hang up once the client's close
    frame is in (its code goes to the list handed to ``started``)."""
    close_codes: list[int] = []

    async def handler(stream: trio.SocketStream) -> None:
        server = ServerProtocol()
        while True:
            server.receive_data(await stream.receive_some(65536))
            events = server.events_received()
            if events:
                break
        server.send_response(server.accept(events[0]))  # type: ignore[arg-type]
        await stream.send_all(b"".join(server.data_to_send()) + wire)
        while server.close_rcvd is None:
            data = await stream.receive_some(65536)
            if not data:
                break
            server.receive_data(data)
        if server.close_rcvd is not None:
            close_codes.append(server.close_rcvd.code)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        task_status.started((port, close_codes))


async def test_frames_in_the_handshake_read_and_a_masked_frame_fail_the_connection() -> None:
    # Frames written along with the 101 response start the fast path at a frame boundary;
    # the masked frame is websockets' to reject: the client answers 1002 and gives up.
    wire = _unmasked_text(b"first") + _masked_text(b"masked") + _unmasked_text(b"never")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port, close_codes = await nursery.start(_serve_raw_websocket, wire)
            ws = await WebSocket.connect(f"ws://127.0.0.1:{port}/")
            assert await ws.receive() == [b"first"]
            messages: list[bytes] = []
            try:
                while True:
                    messages.extend(await ws.receive())
            except WebSocketClosed:
                pass
            assert messages == []
            assert close_codes == [1002]
            await ws.aclose()
            nursery.cancel_scope.cancel()
