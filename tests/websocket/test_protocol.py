"""Client protocol: path, pings, subscribe/unsubscribe filters, snapshot, bad messages."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from trio_websocket import ConnectionClosed

from streamer import Book
from streamer.wire import encode, render
from streamer_websocket.client import coalesce
from streamer_websocket.envelope import Envelope
from websocket.helpers import (
    StartSink,
    close_code,
    connect,
    kline,
    price,
    recv,
    recv_until_data,
    send,
    ticker,
    trade,
)


async def test_wrong_path_closes_with_4404(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink(path="/ws")
        await inbox.put([kline()])
        ws = await connect(nursery, sink, path="/other")
        with pytest.raises(ConnectionClosed) as info:
            await ws.get_message()  # no snapshot, no data: only the close
        assert close_code(info.value) == 4404
        assert sink.metrics["wrong_path"] == 1
        good = await connect(nursery, sink, path="/ws/?x=1")  # trailing slash, query ignored
        assert (await recv(good))["data_type"] == "klines"


async def test_application_ping_gets_pong(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, _ = await start_sink()
        ws = await connect(nursery, sink)
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"op": "pong"}


async def subscribed(nursery, sink, args: list[dict[str, Any]]) -> Any:
    ws = await connect(nursery, sink)
    await send(ws, {"op": "subscribe", "args": args})
    ack = await recv(ws)
    assert ack["op"] == "subscribe" and ack["success"] is True, ack
    return ws


async def test_subscription_filters_channel_type_and_symbols(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        everything = await connect(nursery, sink)
        btc_klines = await subscribed(
            nursery, sink, [{"channel": "linear", "data_type": "klines", "symbols": ["btcusdt"]}]
        )
        spot_trades = await subscribed(nursery, sink, [{"channel": "spot", "data_type": "trades"}])
        await sink.wait_for_clients(3)
        batch = [
            kline("BTCUSDT", 1.0), kline("ETHUSDT", 2.0), kline("BTCUSDT", 3.0, channel="spot"),
            trade("BTCUSDT", 1), trade("BTCUSDT", 2, channel="spot"),
            trade("ETHUSDT", 3, channel="spot"), ticker("BTCUSDT"), kline("BTCUSDT", 4.0),
        ]
        await inbox.put(batch)
        await inbox.put([price("BTCUSDT"), kline("BTCUSDT", 5.0)])
        env = await recv_until_data(btc_klines)
        assert env["channel"] == "linear" and env["data_type"] == "klines"
        closes = [k["close"] for k in env["data"]]
        if closes == [1.0, 4.0]:  # the second batch may or may not be coalesced into it
            closes += [k["close"] for k in (await recv_until_data(btc_klines))["data"]]
        assert closes == [1.0, 4.0, 5.0]
        env = await recv_until_data(spot_trades)
        assert (env["channel"], env["data_type"]) == ("spot", "trades")
        assert [t["s"] for t in env["data"]] == ["BTCUSDT", "ETHUSDT"]
        got = []
        while len(got) < len(batch) + 2:
            env = await recv_until_data(everything)
            got.extend((env["channel"], env["data_type"]) for _ in env["data"])
        assert len(got) == 10
        # Nothing else arrived for the filtered clients: a ping is answered next.
        for ws in (btc_klines, spot_trades):
            await send(ws, {"type": "ping"})
            assert await recv(ws) == {"type": "pong"}


async def test_subscription_without_channel_or_type_means_all_of_them(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await subscribed(nursery, sink, [{"symbols": ["ETHUSDT"]}])
        await sink.wait_for_clients(1)
        await inbox.put([kline("BTCUSDT"), trade("ETHUSDT", channel="spot"), kline("ETHUSDT")])
        seen = []
        while len(seen) < 2:
            env = await recv_until_data(ws)
            seen += [(env["channel"], env["data_type"])] * len(env["data"])
        assert sorted(seen) == [("linear", "klines"), ("spot", "trades")]


async def test_unsubscribe(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await subscribed(
            nursery, sink, [{"channel": "linear", "data_type": "klines",
                             "symbols": ["BTCUSDT", "ETHUSDT"]}]
        )
        await sink.wait_for_clients(1)
        await send(ws, {"op": "unsubscribe", "args": [
            {"channel": "linear", "data_type": "klines", "symbols": ["BTCUSDT"]}]})
        assert await recv(ws) == {"op": "unsubscribe", "success": True, "args": [
            {"channel": "linear", "data_type": "klines", "symbols": ["BTCUSDT"]}]}
        await inbox.put([kline("BTCUSDT", 1.0), kline("ETHUSDT", 2.0)])
        env = await recv_until_data(ws)
        assert [k["symbol"] for k in env["data"]] == ["ETHUSDT"]
        # Unsubscribing the rest leaves an empty subscription: nothing at all, not everything.
        await send(ws, {"op": "unsubscribe", "args": [{"channel": "linear"}]})
        assert (await recv(ws))["success"] is True
        await inbox.put([kline("ETHUSDT", 3.0), trade()])
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}


async def test_unsubscribing_everything_but_one_type(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await connect(nursery, sink)
        await send(ws, {"op": "unsubscribe", "args": [{"data_type": "trades"}]})
        assert (await recv(ws))["success"] is True
        await sink.wait_for_clients(1)
        await inbox.put([trade(), kline()])
        env = await recv_until_data(ws)
        assert env["data_type"] == "klines"
        # A single symbol cannot be carved out of "all symbols": an error, nothing changes.
        await send(ws, {"op": "unsubscribe", "args": [{"symbols": ["BTCUSDT"]}]})
        reply = await recv(ws)
        assert reply["success"] is False and "cannot unsubscribe single symbols" in reply["error"]


async def test_snapshot_on_connect(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([ticker("BTCUSDT", 99.0), kline("BTCUSDT", 99.0, closed=True),
                         trade("BTCUSDT")])
        await inbox.put([price("BTCUSDT", 101.0), ticker("BTCUSDT", 101.0),
                         kline("BTCUSDT", 101.0, ts=1_700_000_060_000),
                         kline("ETHUSDT", 5.0, channel="spot"), trade("ETHUSDT", channel="spot")])
        watcher = await connect(nursery, sink)  # receives the live batches themselves
        await recv_until_data(watcher)
        ws = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        snapshot = []
        for _ in range(4):
            env = await recv(ws)
            snapshot.append(env)
        kinds = [(e["channel"], e["data_type"]) for e in snapshot]
        assert kinds == [("linear", "ticker"), ("linear", "price"), ("linear", "klines"),
                         ("spot", "klines")]
        assert snapshot[0]["data"] == [{"symbol": "BTCUSDT", "lastPrice": 101.0,
                                        "ts": 1_700_000_000_000}]
        assert [k["close"] for k in snapshot[2]["data"]] == [101.0]  # the latest, still open
        assert snapshot[2]["data"][0]["closed"] is False
        # Then live data, after the snapshot.
        await inbox.put([kline("BTCUSDT", 102.0, ts=1_700_000_060_000)])
        env = await recv(ws)
        assert env["data_type"] == "klines" and env["data"][0]["close"] == 102.0


async def test_snapshot_keeps_one_kline_per_interval(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([kline(interval=60_000, close=1.0), kline(interval=300_000, close=2.0),
                         kline(interval=60_000, close=3.0)])
        await inbox.put([price()])  # the fan-out of the first batch is done after this one
        ws = await connect(nursery, sink)
        await recv(ws)  # price
        env = await recv(ws)
        assert sorted((k["interval"], k["close"]) for k in env["data"]) == [
            (60_000, 3.0), (300_000, 2.0)]


async def test_snapshot_on_subscribe_is_filtered(start_sink: StartSink, nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([ticker("BTCUSDT"), ticker("ETHUSDT"), kline("ETHUSDT", 7.0)])
        await inbox.put([price("ETHUSDT")])
        ws = await connect(nursery, sink)
        await recv(ws), await recv(ws), await recv(ws)  # the full snapshot on connect
        await send(ws, {"op": "subscribe", "args": [{"data_type": "klines",
                                                     "symbols": ["ETHUSDT"]}]})
        assert (await recv(ws))["success"] is True
        env = await recv(ws)
        assert env["data_type"] == "klines" and env["data"][0]["symbol"] == "ETHUSDT"
        await send(ws, {"type": "ping"})
        assert await recv(ws) == {"type": "pong"}  # no ticker/price snapshot followed


@pytest.mark.parametrize(
    "message, error",
    [
        ("{nope", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"op": "dance"}', "unknown request"),
        ('{"hello": 1}', "unknown request"),
        ('{"op": "subscribe"}', "non-empty list"),
        ('{"op": "subscribe", "args": []}', "non-empty list"),
        ('{"op": "subscribe", "args": ["linear"]}', "each arg must be an object"),
        ('{"op": "subscribe", "args": [{"channel": "linear.*"}]}', "bad channel name"),
        ('{"op": "subscribe", "args": [{"channel": 7}]}', "bad channel name"),
        ('{"op": "subscribe", "args": [{"data_type": "kline"}]}', "data_type must be one of"),
        ('{"op": "subscribe", "args": [{"symbols": "BTCUSDT"}]}', "symbols must be"),
        ('{"op": "subscribe", "args": [{"symbols": []}]}', "symbols must be"),
        ('{"op": "subscribe", "args": [{"topic": "x"}]}', "unknown arg keys: topic"),
        ('{"op": "subscribe", "args": [{"fields": []}]}', "fields must be a non-empty list"),
        ('{"op": "subscribe", "args": [{"fields": ["' + "x" * 65 + '"]}]}',
         "each 1-64 characters"),
        ('{"op": "subscribe", "args": [{"fields": ' + str([f"f{i}" for i in range(33)])
         .replace("'", '"') + "}]}", "at most 32 names"),
        ('{"op": "unsubscribe", "args": [{"data_type": "ticker", "fields": ["lastPrice"]}]}',
         "fields are named by subscribe only"),
        ('{"op": "subscribe", "args": [{"data_type": "book", "fields": ["b"]}]}',
         "fields need a data_type other than book"),
        ('{"op": "subscribe", "args": [{"fields": ["lastPrice"]}]}',
         "fields need a data_type other than book"),
    ],
)
async def test_bad_client_messages_get_an_error_and_harm_nobody(
    start_sink: StartSink, nursery, message: str, error: str
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        bad = await connect(nursery, sink)
        good = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        await bad.send_message(message)
        reply = await recv(bad)
        assert error in reply["error"]
        if '"op": "subscribe"' in message:
            assert reply["op"] == "subscribe" and reply["success"] is False
        assert sink.metrics["bad_client_messages"] == 1
        await inbox.put([kline()])
        assert (await recv(good))["data_type"] == "klines"
        assert (await recv(bad))["data_type"] == "klines"  # the bad one still served too


async def test_oversized_client_message_closes_only_that_client(
    start_sink: StartSink, nursery
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink(max_client_message=1000)
        bad = await connect(nursery, sink)
        good = await connect(nursery, sink)
        await sink.wait_for_clients(2)
        await bad.send_message("x" * 5000)
        with pytest.raises(ConnectionClosed) as info:
            await bad.get_message()
        assert close_code(info.value) == 1009
        await sink.wait_for_clients(1)
        await inbox.put([kline()])
        assert (await recv(good))["data_type"] == "klines"


def test_coalesced_text_is_the_wire_encoding_of_the_merged_envelope() -> None:
    batches = [[kline("BTCUSDT", 1.0), trade("BTCUSDT", 1)], [trade("ETHUSDT", 2)], [],
               [kline("ETHUSDT", 2.0), ticker("BTCUSDT")]]
    envelopes = [Envelope.from_wire(env) for batch in batches for env in render(batch)]
    envelopes.append(Envelope("linear", "trades", []))
    texts = coalesce(envelopes)
    expected = render([e for batch in batches for e in batch])
    assert texts == [encode(env).decode() for env in expected]
    assert [msgspec.json.decode(t)["data_type"] for t in texts] == ["klines", "trades", "ticker"]


def test_an_envelope_is_encoded_once_and_shared() -> None:
    env = Envelope.from_wire(render([kline()])[0])
    assert env.text() is env.text()
    assert coalesce([env])[0] is env.text()


def test_coalescing_splits_past_max_message_size() -> None:
    envelopes = [
        Envelope.from_wire(render([trade("BTCUSDT", b * 10 + i) for i in range(10)])[0])
        for b in range(10)
    ]
    limit = len(envelopes[-1].data_text()) * 3
    texts = coalesce(envelopes, max_chars=limit)
    # Each envelope's data is as long as the last one's but the first (10 chars shorter, its
    # ids one digit): three fit under three times the last, a fourth does not.
    assert [len(msgspec.json.decode(text)["data"]) for text in texts] == [30, 30, 30, 10]
    assert all(len(text) < limit + 100 for text in texts)
    ids = [t["i"] for text in texts for t in msgspec.json.decode(text)["data"]]
    assert ids == [f"t{i}" for i in range(100)]


def _book(symbol: str, kind: str, u: int, bids, asks, channel: str = "linear") -> Book:
    return Book(channel, symbol, kind, bids, asks, u, 1_700_000_000_000 + u, u * 10)


async def test_a_new_client_gets_each_book_whole_then_its_deltas(start_sink: StartSink,
                                                                 nursery) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([_book("BTCUSDT", "snapshot", 5, [["100", "1"], ["99", "2"]],
                               [["101", "1"]]),
                         _book("BTCUSDT", "delta", 6, [["100", "0"], ["98", "3"]], []),
                         _book("ETHUSDT", "snapshot", 1, [["10", "1"]], [["11", "1"]]),
                         _book("SOLUSDT", "delta", 4, [["1", "1"]], [])])  # no snapshot
        await inbox.put([_book("ETHUSDT", "delta", 3, [["9", "1"]], [])])  # 2 missing
        watcher = await connect(nursery, sink)
        on_connect = await recv(watcher)  # every exact book: BTCUSDT only
        await send(watcher, {"op": "subscribe", "args": [{"data_type": "book",
                                                          "symbols": ["BTCUSDT"]}]})
        assert (await recv(watcher))["success"] is True
        env = await recv(watcher)
        assert env == on_connect == {"channel": "linear", "data_type": "book", "data": [
            {"symbol": "BTCUSDT", "kind": "snapshot", "bids": [["99", "2"], ["98", "3"]],
             "asks": [["101", "1"]], "update_id": 6, "ts": 1_700_000_000_006, "seq": 60}]}
        await inbox.put([_book("BTCUSDT", "delta", 7, [], [["101", "0"]]),
                         _book("ETHUSDT", "snapshot", 9, [], [])])
        env = await recv(watcher)  # only its symbol, the delta that follows the snapshot
        assert env["data"] == [{"symbol": "BTCUSDT", "kind": "delta", "bids": [],
                                "asks": [["101", "0"]], "update_id": 7,
                                "ts": 1_700_000_000_007, "seq": 70}]
        assert sink.metrics["book_gaps"] == 1  # ETHUSDT's 3 after 1: dropped, not served
        ws = await connect(nursery, sink)  # everything: both books held now, one each
        got = (await recv(ws))["data"]  # coalesced into one message (one channel and type)
        assert [(b["symbol"], b["update_id"]) for b in got] == [("BTCUSDT", 7), ("ETHUSDT", 9)]
        assert got[0]["asks"] == [] and got[1]["bids"] == []


async def test_liquidations_are_filtered_by_their_s_and_never_in_the_snapshot(
    start_sink: StartSink, nursery
) -> None:
    """A liquidation names its symbol ``s`` as a trade does: a subscription to one symbol's
    liquidations gets them, and the snapshot (state, not history) holds none."""
    from streamer import Liquidation

    def liquidation(symbol: str, ts: int) -> Liquidation:
        return Liquidation(channel="linear", symbol=symbol, ts=ts, side="Buy", size="1",
                           price="100")

    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await subscribed(nursery, sink, [{"data_type": "liquidations",
                                               "symbols": ["BTCUSDT"]}])
        await sink.wait_for_clients(1)
        await inbox.put([liquidation("ETHUSDT", 1), liquidation("BTCUSDT", 2)])
        env = await recv_until_data(ws)
        assert env == {"channel": "linear", "data_type": "liquidations",
                       "data": [liquidation("BTCUSDT", 2).to_wire()]}
        late = await connect(nursery, sink)
        await send(late, {"type": "ping"})
        assert await recv(late) == {"type": "pong"}  # no snapshot came before it
        assert len(sink.snapshot) == 0
