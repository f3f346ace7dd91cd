"""Batched clients ({"op": "batch"}, the web view): one write per tick at most, frames shared
between clients of the same subscription, the same bounds as every client."""

from __future__ import annotations

import itertools
import json
import socket

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed
from websockets.sync.client import connect as sync_connect
from wsproto.frame_protocol import FrameProtocol

from streamer import Inbox
from streamer_websocket.batching import Ticker
from streamer_websocket.client import Client, coalesce
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.envelope import Envelope
from streamer_websocket.frames import text_frame, text_frames
from streamer_websocket.front import ReplayStream
from streamer_websocket.subscription import MAX_SIGNATURE_ENTRIES, Subscription, parse_args
from websocket.helpers import (
    FrameReader,
    StartSink,
    client_frame,
    close_code,
    connect,
    make_sink,
    recv,
    recv_until_data,
    send,
    send_all,
    stalled_client,
    ticker,
    trade,
)

#: The sink's default batch_interval (the tests' sinks use it).
INTERVAL: float = attrs.fields(WebSocketConfig).batch_interval.default
BATCH_ACK = {"op": "batch", "success": True, "interval": INTERVAL, "latest": []}


async def batched(nursery: trio.Nursery, sink, args: list | None = None):
    """A client that asked for batches (and subscribed to ``args``), its acks read."""
    ws = await connect(nursery, sink)
    await send(ws, {"op": "batch"})
    assert await recv(ws) == BATCH_ACK
    if args is not None:
        await send(ws, {"op": "subscribe", "args": args})
        assert (await recv(ws))["op"] == "subscribe"
    return ws


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_a_text_frame_is_what_wsproto_writes(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8 too
    wsproto_server = FrameProtocol(client=False, extensions=[])
    assert text_frame(text.encode()) == wsproto_server.send_data(text, fin=True)


def test_signature_is_equal_for_equal_subscriptions_only() -> None:
    def sub(*args: dict) -> Subscription:
        return Subscription.of(parse_args(list(args)))

    one = sub({"data_type": "ticker"},
              {"channel": "linear", "data_type": "trades", "symbols": ["btcusdt"]})
    same = sub({"channel": "linear", "data_type": "trades", "symbols": ["BTCUSDT"]},
               {"data_type": "ticker"})
    other = sub({"data_type": "ticker"},
                {"channel": "linear", "data_type": "trades", "symbols": ["ETHUSDT"]})
    assert one.signature() == same.signature()
    assert one.signature() != other.signature()
    other.unsubscribe(parse_args([{"channel": "linear", "data_type": "trades"}]))
    other.subscribe(parse_args([{"channel": "linear", "data_type": "trades",
                                 "symbols": ["BTCUSDT"]}]), limit=None)
    assert other.signature() == one.signature()
    # Carving a channel out of "every channel" selects less: another signature.
    carved = sub({"data_type": "ticker"},
                 {"channel": "linear", "data_type": "trades", "symbols": ["BTCUSDT"]})
    carved.unsubscribe(parse_args([{"channel": "spot", "data_type": "ticker"}]))
    assert carved.signature() != one.signature()
    symbols = [f"S{i}" for i in range(MAX_SIGNATURE_ENTRIES)]
    at_cap = sub({"data_type": "trades", "symbols": symbols})
    assert at_cap.size == MAX_SIGNATURE_ENTRIES and at_cap.signature() is not None
    at_cap.subscribe(parse_args([{"data_type": "trades", "symbols": ["ONEMORE"]}]), limit=None)
    assert at_cap.signature() is None  # selected for on its own


def test_one_tick_builds_one_batch_per_subscription() -> None:
    from streamer._metrics import Metrics

    def client(args: list[dict] | None) -> Client:
        # No connection: the tick's shares are only computed here, nothing is written.
        c = Client(None, client_id=1, address="127.0.0.1", queue_size=100,  # type: ignore[arg-type]
                   max_dropped=10, send_timeout=1, max_message_chars=1 << 18,
                   metrics=Metrics(), cancel_scope=trio.CancelScope())
        c.subscription = None if args is None else Subscription.of(parse_args(args))
        return c

    btc = [{"data_type": "trades", "symbols": ["BTCUSDT"]}]
    a, b, c, everything = client(btc), client(btc), client([{"data_type": "ticker"}]), client(None)
    tick = Ticker(0.1, 1 << 18)
    for x in (a, b, c, everything):
        tick.add(x)
    envelopes = [Envelope.from_wire(w) for w in (
        {"channel": "linear", "data_type": "trades",
         "data": [{"s": "BTCUSDT", "i": "1"}, {"s": "ETHUSDT", "i": "2"}]},
        {"channel": "linear", "data_type": "ticker", "data": [{"symbol": "BTCUSDT"}]},
        {"channel": "linear", "data_type": "trades", "data": [{"s": "BTCUSDT", "i": "3"}]},
    )]
    tick.collect(envelopes[:2])
    tick.collect(envelopes[2:])
    assert tick.pending == envelopes
    shares = dict(tick.share(tick.pending))
    assert shares[a] is shares[b]
    assert shares[a].frames() is shares[b].frames()  # built once, the same bytes
    assert shares[a].frames() == text_frame(
        b'{"channel":"linear","data_type":"trades","data":[{"s":"BTCUSDT","i":"1"},'
        b'{"s":"BTCUSDT","i":"3"}]}')
    assert shares[c].envelopes == [envelopes[1]]
    assert shares[everything].envelopes == envelopes
    assert shares[everything].frames() == text_frames(coalesce(envelopes))


async def test_fan_outs_between_ticks_go_out_in_one_message(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        ws = await batched(nursery, sink)
        immediate = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        start = trio.current_time()
        for b in range(50):  # 50 inbox drains, no time passing: within one tick
            await inbox.put([trade("BTCUSDT", 2 * b), trade("ETHUSDT", 2 * b + 1)])
            await trio.sleep(0)
        message = await recv_until_data(ws)
        assert message["data_type"] == "trades"
        assert [t["i"] for t in message["data"]] == [f"t{n}" for n in range(100)]
        assert trio.current_time() - start <= INTERVAL  # at the next tick
        # A client that did not ask gets them as they came, in more messages.
        messages = 0
        got: list[str] = []
        while len(got) < 100:
            got += [t["i"] for t in (await recv_until_data(immediate))["data"]]
            messages += 1
        assert got == [f"t{n}" for n in range(100)] and messages > 1


async def test_at_most_one_write_per_tick_replies_first(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        ws = await batched(nursery, sink, [{"data_type": "trades", "symbols": ["BTCUSDT"]}])
        await sink.wait_for_clients(1)
        arrivals: list[float] = []  # of each data message
        pong_at: list[float] = []
        got: list[str] = []

        async def read() -> None:
            while len(got) < 200:
                message = await recv(ws)
                if message.get("op") == "pong":
                    pong_at.append(trio.current_time())
                    continue
                arrivals.append(trio.current_time())
                got.extend(t["i"] for t in message["data"])

        async with trio.open_nursery() as readers:
            readers.start_soon(read)
            start = trio.current_time()
            for n in range(200):  # a trade every 5 ms for a second, an ETH one between
                await inbox.put([trade("BTCUSDT", n), trade("ETHUSDT", 1000 + n)])
                if n == 100:
                    await send(ws, {"op": "ping"})
                await trio.sleep(0.005)
        assert got == [f"t{n}" for n in range(200)]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert min(gaps) >= INTERVAL - 1e-6
        assert len(arrivals) <= (trio.current_time() - start) / INTERVAL + 1
        # The pong waited for the next tick and went out with its data, ahead of it.
        assert len(pong_at) == 1 and pong_at[0] in arrivals
        assert pong_at[0] - (start + 100 * 0.005) <= INTERVAL


async def test_websockets_client_reads_the_frames(start_sink: StartSink, nursery) -> None:
    """Another implementation's parser (and one that offers permessage-deflate, which the
    sink declines) reads the ready-made frames."""
    with trio.fail_after(30):
        sink, inbox = await start_sink(ping_interval=0)
        url = f"ws://127.0.0.1:{sink.port}/"

        def client() -> tuple[list[str], str | None]:
            with sync_connect(url) as ws:
                ws.send(json.dumps({"op": "batch"}))
                assert json.loads(ws.recv(timeout=10)) == BATCH_ACK
                got: list[str] = []
                while len(got) < 3000:
                    message = json.loads(ws.recv(timeout=10))
                    got += [t["i"] for t in message["data"]]
                return got, ws.response.headers.get("Sec-WebSocket-Extensions")

        async def feed() -> None:
            await sink.wait_for_clients(1)
            while not sink._ticker.clients:
                await trio.sleep(0.01)
            for b in range(100):  # ~30 kB messages: 16-bit lengths, 64-bit past 64 KiB
                await inbox.put([trade("BTCUSDT", 30 * b + j) for j in range(30)])
                await trio.sleep(0.001 if b % 10 else 0.15)

        nursery.start_soon(feed)
        got, extensions = await trio.to_thread.run_sync(client)
        assert got == [f"t{n}" for n in range(3000)]
        assert extensions is None


def test_the_tick_holds_only_what_a_batched_client_selects() -> None:
    """Envelopes no batched client selects are let go at the fan-out, not held for the
    tick; a subscription changed between ticks holds from the change on, and the data
    before it stays selected as before."""
    from streamer._metrics import Metrics

    def env(data_type: str, *symbols: str) -> Envelope:
        key = "s" if data_type == "trades" else "symbol"
        return Envelope("linear", data_type, [{key: s} for s in symbols])

    viewer = Client(None, client_id=1, address="127.0.0.1", queue_size=100,  # type: ignore[arg-type]
                    max_dropped=10, send_timeout=1, max_message_chars=1 << 18,
                    metrics=Metrics(), cancel_scope=trio.CancelScope())
    viewer.subscription = Subscription.of(parse_args(
        [{"data_type": "trades", "symbols": ["BTCUSDT"]}, {"data_type": "ticker"}]))
    tick = Ticker(0.1, 1 << 18)
    tick.collect([env("trades", "BTCUSDT")])
    assert tick.pending == []  # no batched client: nothing held
    tick.add(viewer)
    btc, eth, mixed = env("trades", "BTCUSDT"), env("trades", "ETHUSDT"), env(
        "trades", "ETHUSDT", "BTCUSDT")
    quote, candle = env("ticker", "ETHUSDT"), env("klines", "BTCUSDT")
    tick.collect([btc, eth, quote, candle, mixed])
    assert tick.pending == [btc, quote, mixed]
    # Subscribe ETHUSDT's trades too: held from the change on.
    tick.settle(viewer)
    viewer.subscription.subscribe(parse_args([{"data_type": "trades", "symbols": ["ETHUSDT"]}]),
                                  limit=None)
    eth2 = env("trades", "ETHUSDT")
    tick.collect([eth2, candle])
    assert tick.pending == [btc, quote, mixed, eth2]
    # settled: selected as before the change (the mixed one cut to BTCUSDT's item)
    assert [(e.data_type, e.data) for e in viewer.queue] == [
        ("trades", [{"s": "BTCUSDT"}]), ("ticker", [{"symbol": "ETHUSDT"}]),
        ("trades", [{"s": "BTCUSDT"}])]
    # No batched client left: nothing held.
    tick.discard(viewer)
    tick.pending = []
    tick.collect([btc, eth2])
    assert tick.pending == []


async def test_data_before_a_subscribe_is_selected_as_before_it(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    """As for a client that is not batched: what came before the subscribe is selected by
    the subscription then (none: everything), then comes the snapshot, then live data."""
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        ws = await batched(nursery, sink)
        await sink.wait_for_clients(1)
        await inbox.put([ticker("ETHUSDT", 5.0), ticker("BTCUSDT", 2.0)])
        await trio.sleep(0)
        await send(ws, {"op": "subscribe",
                        "args": [{"data_type": "ticker", "symbols": ["BTCUSDT"]}]})
        assert (await recv(ws))["op"] == "subscribe"
        await inbox.put([ticker("ETHUSDT", 6.0), ticker("BTCUSDT", 3.0)])
        items: list[tuple[str, float]] = []
        while len(items) < 4:
            items += [(t["symbol"], t["lastPrice"]) for t in (await recv_until_data(ws))["data"]]
        assert items == [("ETHUSDT", 5.0), ("BTCUSDT", 2.0),  # before the subscribe
                         ("BTCUSDT", 2.0),  # its snapshot
                         ("BTCUSDT", 3.0)]  # after it


async def test_stalled_batched_client_is_cut_while_others_get_everything(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(60):
        sink, inbox = await start_sink(inbox_size=50, client_queue_size=200, max_dropped=100,
                                       send_timeout=60)
        fast = [await batched(nursery, sink) for _ in range(5)]
        stalled = await stalled_client(sink)
        assert await send_all(stalled, client_frame('{"op": "batch"}'))
        await sink.wait_for_clients(6)
        while len(sink._ticker.clients) < 6:
            await trio.sleep(0.01)
        batches, per_batch = 2000, 20
        received: dict[int, list[str]] = {}

        async def read(i: int) -> None:
            items: list[str] = []
            while len(items) < batches * per_batch:
                items += [t["i"] for t in (await recv_until_data(fast[i]))["data"]]
            received[i] = items

        async with trio.open_nursery() as readers:
            for i in range(5):
                readers.start_soon(read, i)
            for b in range(batches):
                await inbox.put([trade("BTCUSDT", b * per_batch + j) for j in range(per_batch)])
                await trio.sleep(0.0005)
        expected = [f"t{n}" for n in range(batches * per_batch)]
        assert all(received[i] == expected for i in range(5))
        assert sink.metrics["slow_client_disconnects"] == 1
        assert len(sink.clients) == len(sink._ticker.clients) == 5
        stalled.close()


async def test_shutdown_flushes_what_came_since_the_last_tick(nursery, autojump_clock) -> None:
    with trio.fail_after(60):
        sink = make_sink(ping_interval=0)
        inbox = Inbox("ws")
        await nursery.start(sink.run, inbox)
        ws = await batched(nursery, sink)
        await sink.wait_for_clients(1)
        for b in range(50):
            await inbox.put([trade("BTCUSDT", b)])
        inbox.close()
        got: list[str] = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                got += [t["i"] for t in (await recv_until_data(ws))["data"]]
        assert got == [f"t{b}" for b in range(50)]
        assert close_code(info.value) == 1001


async def test_a_client_turning_batched_between_ticks_gets_nothing_twice(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        first = await batched(nursery, sink)
        later = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        for n in range(10):
            await inbox.put([trade("BTCUSDT", n)])
            await trio.sleep(0)
        # `later` got those ten as they came; the tick holds them for `first` meanwhile.
        got: list[str] = []
        while len(got) < 10:
            got += [t["i"] for t in (await recv_until_data(later))["data"]]
        await send(later, {"op": "batch"})
        assert await recv(later) == BATCH_ACK
        for n in range(10, 20):
            await inbox.put([trade("BTCUSDT", n)])
        while len(got) < 20:
            got += [t["i"] for t in (await recv_until_data(later))["data"]]
        assert got == [f"t{n}" for n in range(20)]
        firsts: list[str] = []
        while len(firsts) < 20:
            firsts += [t["i"] for t in (await recv_until_data(first))["data"]]
        assert firsts == [f"t{n}" for n in range(20)]


async def test_a_stuck_batched_write_is_cut_after_send_timeout(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    with trio.fail_after(300):
        sink, inbox = await start_sink(max_dropped=10**9, send_timeout=5, ping_interval=0)
        stalled = await stalled_client(sink)
        assert await send_all(stalled, client_frame('{"op": "batch"}'))
        while not sink._ticker.clients:
            await trio.sleep(0.01)
        start = trio.current_time()
        # One big write is enough to block on a 4 KiB receive buffer; the tick after
        # send_timeout cuts it.
        await inbox.put([trade("BTCUSDT", i) for i in range(50_000)])
        await sink.wait_for_clients(0)
        assert 5 <= trio.current_time() - start <= 5 + 2 * INTERVAL
        assert sink.metrics["slow_client_disconnects"] == 1
        stalled.close()


def client_ping(payload: bytes) -> bytes:
    """A masked ping frame, as a browser's or a library's keepalive sends it."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x89, 0x80 | len(payload)]) + mask + masked


async def test_a_backlog_goes_out_whole_before_any_other_frame(
    start_sink: StartSink, nursery
) -> None:
    """A slow reader: the socket takes part of a tick's write, the client's task sends the
    rest; the pongs trio-websocket sends meanwhile come between whole frames only."""
    with trio.fail_after(60):
        sink, inbox = await start_sink(client_queue_size=100_000, max_dropped=10**9,
                                       send_timeout=60, ping_interval=0)
        sock = await stalled_client(sink)  # a 4 KiB receive buffer
        assert await send_all(sock, client_frame('{"op": "batch"}'))
        while not sink._ticker.clients:
            await trio.sleep(0.01)
        total = 400 * 50
        got: list[str] = []
        pongs: list[bytes] = []
        reader = FrameReader(sock)

        async def read() -> None:
            while len(got) < total or len(pongs) < 20:
                frame = await reader.next()
                assert frame is not None
                opcode, payload = frame
                if opcode == 0xA:
                    pongs.append(payload)
                    continue
                assert opcode == 0x1
                message = json.loads(payload)
                if "data" in message:
                    got.extend(t["i"] for t in message["data"])
                await trio.sleep(0.0005)  # slower than the feed

        async def ping() -> None:
            for n in range(20):
                assert await send_all(sock, client_ping(b"p%d" % n))
                await trio.sleep(0.05)

        async with trio.open_nursery() as clients:
            clients.start_soon(read)
            clients.start_soon(ping)
            for b in range(400):
                await inbox.put([trade("BTCUSDT", 50 * b + j) for j in range(50)])
                await trio.sleep(0.002)
        assert got == [f"t{n}" for n in range(total)]
        assert pongs == [b"p%d" % n for n in range(20)]
        assert sink.metrics["batched_backlogs"] > 0
        sock.close()


async def test_the_backlog_goes_out_before_anything_else_sent() -> None:
    """What the socket did not take of a write_nowait is written before any later send
    (trio-websocket's pongs and close frames go through send_all too)."""
    a, b = trio.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stream = ReplayStream(trio.SocketStream(a), b"")
    big = bytes(range(256)) * 4096  # 1 MiB: far more than the buffers take
    assert stream.write_nowait(big) and stream.backlogged
    assert not stream.write_nowait(b"x")  # behind a backlog: refused, sent in order later
    received = bytearray()

    async def read() -> None:
        while len(received) < len(big) + 4:
            received.extend(await b.recv(65536))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await stream.send_all(b"PONG")
    assert bytes(received) == big + b"PONG"
    assert not stream.backlogged
    assert stream.write_nowait(b"!") and await b.recv(10) == b"!"
    await stream.aclose()
    assert not stream.write_nowait(b"?")  # closed: its descriptor is never written again
    b.close()


async def test_status_pushed_once_a_second_to_who_asked(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    """``{"op": "status", "push": true}``: the status now, then pushed by the tick once a
    second (the same text to every such client, a batched one's in the tick's write), until
    ``"push": false``; a client that did not ask gets none; a plain ``{"op": "status"}``
    is still answered once."""
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0, web=True)
        pushed = await batched(nursery, sink, [{"data_type": "trades"}])
        plain = await connect(nursery, sink)  # not batched
        quiet = await batched(nursery, sink, [{"data_type": "trades"}])
        await sink.wait_for_clients(3)
        await send(pushed, {"op": "status", "push": True})
        await send(plain, {"op": "status", "push": True})
        await send(quiet, {"op": "status"})
        for ws in (pushed, plain, quiet):
            assert (await recv(ws))["op"] == "status"
        start = trio.current_time()
        seen: dict[str, list[tuple[float, str]]] = {"pushed": [], "plain": [], "quiet": []}

        async def read(name: str, ws) -> None:
            while True:
                message = await ws.get_message()
                kind = "status" if message.startswith('{"op":"status"') else "data"
                seen[name].append((trio.current_time() - start, kind))

        async with trio.open_nursery() as readers:
            for name, ws in (("pushed", pushed), ("plain", plain), ("quiet", quiet)):
                readers.start_soon(read, name, ws)
            for n in range(350):  # 3.5 s of trades
                await inbox.put([trade("BTCUSDT", n)])
                if n == 150:
                    await send(pushed, {"op": "status", "push": False})
                await trio.sleep(0.01)
            await trio.sleep(0.45)
            readers.cancel_scope.cancel()
        statuses = {name: [t for t, kind in got if kind == "status"]
                    for name, got in seen.items()}
        assert statuses["quiet"] == []
        # Pushed every second of the 3.95 s (from the first tick on), same for both.
        assert len(statuses["plain"]) == 4
        assert all(1 - INTERVAL <= b - a <= 1 + INTERVAL
                   for a, b in itertools.pairwise(statuses["plain"]))
        # Until "push": false at 1.5 s: 2 pushes, and the reply to that request.
        assert len(statuses["pushed"]) == 3
        assert statuses["pushed"][:2] == statuses["plain"][:2]
        assert 1.5 <= statuses["pushed"][2] <= 1.5 + INTERVAL + 1e-6  # with the next tick
        # A batched client's push goes out in the same write as the tick's data.
        data_at = {t for t, kind in seen["pushed"] if kind == "data"}
        assert statuses["pushed"][1] in data_at
        assert sink._ticker.status_clients == {c for c in sink.clients if not c.batched}
