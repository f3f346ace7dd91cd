"""Fewer bytes per viewer: a subscription naming the fields it wants (``"fields"``), and a
batched client asking for only the latest ticker per symbol of each tick
(``{"op": "batch", "latest": ["ticker"]}``), as the web view's page does."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from streamer import Book, Ticker
from streamer._metrics import Metrics
from streamer_websocket.batching import LATEST_TYPES, conflate
from streamer_websocket.batching import Ticker as TickClock
from streamer_websocket.client import Client
from streamer_websocket.config import WebSocketConfig
from streamer_websocket.envelope import Envelope
from streamer_websocket.subscription import (
    FIELDS_NEED_A_DATA_TYPE,
    IDENTITY_FIELDS,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    Subscription,
    SubscriptionError,
    parse_args,
)
from websocket.helpers import StartSink, connect, kline, recv, recv_until_data, send, trade

INTERVAL: float = attrs.fields(WebSocketConfig).batch_interval.default
PAGE_FIELDS = ["bid1Price", "ask1Price", "lastPrice"]


def full_ticker(symbol: str = "BTCUSDT", last: float = 100.0, channel: str = "linear",
                ts: int = 1_700_000_000_000) -> Ticker:
    """A ticker with more fields than the page reads, as Bybit's are."""
    return Ticker(channel=channel, symbol=symbol, ts=ts, fields={
        "symbol": symbol, "lastPrice": last, "bid1Price": last - 1, "bid1Size": 3.0,
        "ask1Price": last + 1, "ask1Size": 4.0, "markPrice": last, "volume24h": 1e6,
        "turnover24h": 1e8, "fundingRate": 0.0001})


def projected(symbol: str = "BTCUSDT", last: float = 100.0,
              ts: int = 1_700_000_000_000) -> dict[str, Any]:
    """:func:`full_ticker` cut to the page's fields (its own key order)."""
    return {"symbol": symbol, "lastPrice": last, "bid1Price": last - 1,
            "ask1Price": last + 1, "ts": ts}


def sub(*args: dict[str, Any]) -> Subscription:
    return Subscription.of(parse_args(list(args)))


def test_fields_are_normalised_and_bounded() -> None:
    assert parse_args([{"data_type": "ticker", "fields": ["lastPrice", "bid1Price",
                                                          "lastPrice"]}]) == [
        {"data_type": "ticker", "fields": ["bid1Price", "lastPrice"]}]
    error = (f"fields must be a non-empty list of at most {MAX_FIELDS} names, each "
             f"1-{MAX_FIELD_CHARS} characters of A-Z a-z 0-9 _")
    for bad in ([], "lastPrice", [7], [""], ["a" * (MAX_FIELD_CHARS + 1)], ["last Price"],
                ['"x"'], [f"f{i}" for i in range(MAX_FIELDS + 1)]):
        with pytest.raises(SubscriptionError) as info:
            parse_args([{"data_type": "ticker", "fields": bad}])
        assert str(info.value) == error
    at_ceiling = [f"f{i}" for i in range(MAX_FIELDS - 1)] + ["a" * MAX_FIELD_CHARS]
    assert parse_args([{"data_type": "trades", "fields": at_ceiling}]) == [
        {"data_type": "trades", "fields": sorted(at_ceiling)}]
    for no_cut in ({}, {"channel": "linear"}, {"data_type": "book"},
                   {"data_type": "book", "symbols": ["BTCUSDT"]}):
        with pytest.raises(SubscriptionError) as info:
            parse_args([{**no_cut, "fields": ["b"]}])
        assert str(info.value) == FIELDS_NEED_A_DATA_TYPE
    with pytest.raises(SubscriptionError, match="fields are named by subscribe only"):
        sub({"data_type": "ticker"}).unsubscribe(
            parse_args([{"data_type": "ticker", "fields": ["lastPrice"]}]))


def test_fields_add_up_per_data_type_and_go_with_its_last_entry() -> None:
    s = sub({"data_type": "ticker", "fields": ["lastPrice"]}, {"data_type": "trades"})
    assert s.fields == {"ticker": IDENTITY_FIELDS | {"lastPrice"}}
    s.subscribe(parse_args([{"channel": "spot", "data_type": "ticker",
                             "fields": ["bid1Price"]}]), limit=None)
    assert s.fields == {"ticker": IDENTITY_FIELDS | {"lastPrice", "bid1Price"}}
    s.subscribe(parse_args([{"channel": "spot", "data_type": "ticker"}]), limit=None)
    assert s.fields == {}  # one without fields: every field
    s.subscribe(parse_args([{"data_type": "ticker", "fields": ["lastPrice"]}]), limit=None)
    assert s.fields == {}  # held with every field: stays so
    s.unsubscribe(parse_args([{"data_type": "ticker"}]))
    s.subscribe(parse_args([{"channel": "linear", "data_type": "ticker",
                             "symbols": ["BTCUSDT"], "fields": ["ask1Price"]}]), limit=None)
    assert s.fields == {"ticker": IDENTITY_FIELDS | {"ask1Price"}}
    s.unsubscribe(parse_args([{"channel": "linear", "data_type": "ticker",
                               "symbols": ["BTCUSDT"]}]))
    assert s.fields == {} and ("linear", "ticker") not in s  # forgotten with the entry
    # Fields are part of the signature: equal subscriptions with other fields differ.
    assert (sub({"data_type": "ticker", "fields": ["lastPrice"]}).signature()
            == sub({"data_type": "ticker", "fields": ["lastPrice"]}).signature())
    assert (sub({"data_type": "ticker", "fields": ["lastPrice"]}).signature()
            != sub({"data_type": "ticker"}).signature())


async def test_a_projected_subscription_gets_exactly_its_fields(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    """Named fields plus the identity keys, in the snapshot and live, for a client that is
    batched and one that is not; other data types and other clients whole."""
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        await inbox.put([full_ticker("BTCUSDT", 100.0)])
        args = [{"data_type": "ticker", "fields": PAGE_FIELDS}, {"data_type": "trades"}]
        clients = {}
        for name in ("plain", "batched", "whole"):
            ws = await connect(nursery, sink)
            assert (await recv(ws))["data_type"] == "ticker"  # the snapshot on connect
            if name == "batched":
                await send(ws, {"op": "batch"})
                assert (await recv(ws))["op"] == "batch"
            await send(ws, {"op": "subscribe", "args": [{"data_type": "ticker"}]
                            if name == "whole" else args})
            ack = await recv(ws)
            if name != "whole":
                assert ack == {"op": "subscribe", "success": True, "args": [
                    {"data_type": "ticker", "fields": ["ask1Price", "bid1Price", "lastPrice"]},
                    {"data_type": "trades"}]}
            snapshot = await recv(ws)
            assert snapshot["data"] == ([full_ticker("BTCUSDT", 100.0).to_wire()]
                                        if name == "whole" else [projected("BTCUSDT", 100.0)])
            clients[name] = ws
        await sink.wait_for_clients(3)
        await inbox.put([full_ticker("ETHUSDT", 5.0, ts=7), trade("BTCUSDT", 1)])
        for name in ("plain", "batched"):
            got = [await recv_until_data(clients[name]), await recv_until_data(clients[name])]
            assert [(m["data_type"], m["data"]) for m in got] == [
                ("ticker", [projected("ETHUSDT", 5.0, ts=7)]),
                ("trades", [trade("BTCUSDT", 1).to_wire()])], name
        whole = await recv_until_data(clients["whole"])
        assert whole["data"] == [full_ticker("ETHUSDT", 5.0, ts=7).to_wire()]


def make_client(args: list[dict[str, Any]] | None) -> Client:
    # No connection: the tick's shares are only computed here, nothing is written.
    c = Client(None, client_id=1, address="127.0.0.1", queue_size=100,  # type: ignore[arg-type]
               max_dropped=10, send_timeout=1, max_message_chars=1 << 18,
               metrics=Metrics(), cancel_scope=trio.CancelScope())
    c.subscription = None if args is None else Subscription.of(parse_args(args))
    return c


def wire(events: list[Any]) -> list[Envelope]:
    from streamer.wire import render

    return [Envelope.from_wire(w) for w in render(events)]


def test_conflation_keeps_the_latest_ticker_per_channel_and_symbol_only() -> None:
    book = Book(channel="linear", symbol="BTCUSDT", kind="delta", bids=[["1", "2"]],
                asks=[], update_id=2, ts=5)
    first = wire([full_ticker("BTCUSDT", 1.0), full_ticker("ETHUSDT", 2.0),
                  trade("BTCUSDT", 1), kline("BTCUSDT", 1.0), book])
    second = wire([full_ticker("BTCUSDT", 3.0), full_ticker("BTCUSDT", 4.0, channel="spot"),
                   trade("BTCUSDT", 2), kline("BTCUSDT", 2.0, closed=True), book])
    third = wire([full_ticker("BTCUSDT", 5.0), trade("BTCUSDT", 3), kline("BTCUSDT", 3.0,
                                                                         ts=2)])
    envelopes = first + second + third
    out = conflate(envelopes, frozenset({"ticker"}))
    tickers = [(e.channel, [(t["symbol"], t["lastPrice"]) for t in e.data])
               for e in out if e.data_type == "ticker"]
    assert tickers == [("linear", [("BTCUSDT", 5.0), ("ETHUSDT", 2.0)]),
                       ("spot", [("BTCUSDT", 4.0)])]
    # Trades, klines and books: every envelope, the same objects, in order.
    others = [e for e in envelopes if e.data_type != "ticker"]
    assert [e for e in out if e.data_type != "ticker"] == others
    assert all(a is b for a, b in zip([e for e in out if e.data_type != "ticker"], others,
                                      strict=True))
    # The linear tickers where their first envelope was, the spot ones where theirs was.
    assert [e.key for e in out][:2] == [("linear", "ticker"), ("linear", "trades")]
    # Nothing to conflate: the same envelopes; naming another type leaves tickers alone.
    lone = wire([full_ticker("BTCUSDT"), trade("BTCUSDT")])
    assert conflate(lone, frozenset({"ticker"})) == lone
    assert conflate(envelopes, frozenset({"price"})) == envelopes
    assert set(LATEST_TYPES) == {"ticker", "price", "derivatives"}


def test_groups_share_one_selection_per_subscription_and_latest() -> None:
    page = [{"data_type": "ticker", "fields": PAGE_FIELDS},
            {"channel": "linear", "data_type": "trades", "symbols": ["BTCUSDT"]}]
    eth = [{"data_type": "ticker", "fields": PAGE_FIELDS},
           {"channel": "linear", "data_type": "trades", "symbols": ["ETHUSDT"]}]
    a, b, c, d, e = (make_client(page), make_client(page), make_client(page),
                     make_client(eth), make_client(eth))
    tick = TickClock(0.1, 1 << 18)
    tick.add(a, frozenset({"ticker"}))
    tick.add(b, frozenset({"ticker"}))
    tick.add(c)
    tick.add(d, frozenset({"ticker"}))
    tick.add(e)
    tick.collect(wire([full_ticker("BTCUSDT", 1.0), trade("BTCUSDT", 1), trade("ETHUSDT", 2)]))
    tick.add(b, frozenset({"ticker"}))  # asked again: changes latest only, misses nothing
    assert b.tick_start == 0
    tick.collect(wire([full_ticker("BTCUSDT", 2.0), full_ticker("ETHUSDT", 3.0)]))
    shares = dict(tick.share(tick.pending))
    assert shares[a] is shares[b]  # one selection, one set of frames
    assert shares[a].frames() is shares[b].frames()
    assert [(e.data_type, e.data) for e in shares[a].envelopes] == [
        ("ticker", [projected("BTCUSDT", 2.0), projected("ETHUSDT", 3.0)]),
        ("trades", [trade("BTCUSDT", 1).to_wire()])]
    # Not conflated: every ticker, projected; the projections are shared with e's group.
    assert shares[c] is not shares[a]
    assert [(e.data_type, e.data) for e in shares[c].envelopes] == [
        ("ticker", [projected("BTCUSDT", 1.0)]), ("trades", [trade("BTCUSDT", 1).to_wire()]),
        ("ticker", [projected("BTCUSDT", 2.0), projected("ETHUSDT", 3.0)])]
    assert [(e.data_type, e.data) for e in shares[d].envelopes] == [
        ("ticker", [projected("BTCUSDT", 2.0), projected("ETHUSDT", 3.0)]),
        ("trades", [trade("ETHUSDT", 2).to_wire()])]
    assert shares[e] is not shares[d]
    assert shares[c].envelopes[0] is shares[e].envelopes[0]  # projected once for both
    assert shares[c].envelopes[2] is shares[e].envelopes[2]


@pytest.mark.parametrize("latest", [["trades"], ["klines"], ["book"], "ticker", [7],
                                    ["ticker"] * 4])
async def test_latest_is_refused_for_anything_but_whole_states(
    start_sink: StartSink, nursery, latest: Any
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        ws = await connect(nursery, sink)
        await send(ws, {"op": "batch", "latest": latest})
        assert await recv(ws) == {
            "op": "batch", "success": False,
            "error": "latest must be a list of data types among derivatives, price, ticker"}
        assert sink.metrics["bad_client_messages"] == 1
        assert not sink._ticker.clients  # not batched
        await inbox.put([trade()])
        assert (await recv(ws))["data_type"] == "trades"  # served as before


async def test_a_batched_client_gets_the_latest_ticker_per_symbol_of_each_tick(
    start_sink: StartSink, nursery, autojump_clock
) -> None:
    """Asked with {"op": "batch", "latest": ["ticker"]}: one ticker per symbol per tick,
    the latest; every trade; a client batched without it gets every ticker. Asking again
    changes it and loses nothing pending."""
    with trio.fail_after(60):
        sink, inbox = await start_sink(ping_interval=0)
        latest = await connect(nursery, sink)
        every = await connect(nursery, sink)
        for ws, ask in ((latest, {"op": "batch", "latest": ["ticker"]}), (every, {"op": "batch"})):
            await send(ws, ask)
            assert await recv(ws) == {"op": "batch", "success": True, "interval": INTERVAL,
                                      "latest": ask.get("latest", [])}
        await sink.wait_for_clients(2)
        while len(sink._ticker.clients) < 2:
            await trio.sleep(0)
        for n in range(10):  # within one tick
            await inbox.put([full_ticker("BTCUSDT", float(n)), trade("BTCUSDT", n),
                             full_ticker("ETHUSDT", 100.0 + n)])
            await trio.sleep(0)
        await send(latest, {"op": "batch", "latest": ["ticker", "price"]})  # again: same tick
        messages = [await recv_until_data(latest), await recv_until_data(latest)]
        assert [(m["data_type"], [(i.get("symbol") or i["s"], i.get("lastPrice") or i["i"])
                                  for i in m["data"]]) for m in messages] == [
            ("ticker", [("BTCUSDT", 9.0), ("ETHUSDT", 109.0)]),
            ("trades", [("BTCUSDT", f"t{n}") for n in range(10)])]
        got = [await recv_until_data(every), await recv_until_data(every)]
        assert [len(m["data"]) for m in got] == [20, 10]
