"""Tests of the fake Bybit itself, through a tiny trio client over real loopback sockets."""

from __future__ import annotations

import re
import struct
import uuid
from collections import deque
from urllib.parse import urlsplit

import orjson
import pytest
import trio
import trio.testing
from bybit_simulator import fake_bybit  # noqa: F401  (the fixture under test)
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from streamer.clock import now_ms
from streamer_bybit.simulator import FakeBybit, make_ssl_contexts, period_end, period_start

LINEAR = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "1000PEPEUSDT"]
SPOT = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour boundary


# ----------------------------------------------------------------------------- client
_OPEN_CLIENTS: list = []


@pytest.fixture(autouse=True)
async def _close_clients():
    yield
    while _OPEN_CLIENTS:
        await _OPEN_CLIENTS.pop().aclose()


class WS:
    """A minimal WebSocket client: websockets' sans-I/O ClientProtocol over a trio stream."""

    def __init__(self, stream, protocol: ClientProtocol):
        self.stream = self._stream0 = stream
        self.protocol = protocol
        self.events: deque = deque()
        self.eof = False
        self.close_frame = None

    @classmethod
    async def connect(cls, url: str, ssl_context=None) -> WS:
        u = urlsplit(url)
        if ssl_context is not None:
            stream = await trio.open_ssl_over_tcp_stream(u.hostname, u.port,
                                                         ssl_context=ssl_context)
        else:
            stream = await trio.open_tcp_stream(u.hostname, u.port)
        protocol = ClientProtocol(parse_uri(url.replace("http", "ws")), max_size=None)
        protocol.send_request(protocol.connect())
        ws = cls(stream, protocol)
        _OPEN_CLIENTS.append(ws)
        await ws._flush()
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            protocol.receive_data(data)
            for ev in protocol.events_received():
                if isinstance(ev, Response):
                    if ev.status_code != 101:
                        raise ConnectionError(f"HTTP {ev.status_code}")
                    return ws
                ws.events.append(ev)
            if protocol.handshake_exc is not None:
                raise ConnectionError(str(protocol.handshake_exc))

    async def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                await self.stream.send_all(chunk)

    async def send(self, obj) -> None:
        self.protocol.send_text(obj if isinstance(obj, bytes) else orjson.dumps(obj))
        await self._flush()

    async def recv_frame(self):
        """Next data/close frame; None on EOF (TCP closed, with or without a close frame)."""
        while not self.events:
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.eof = True
                self.protocol.receive_eof()
            else:
                self.protocol.receive_data(data)
            for ev in self.protocol.events_received():
                if ev.opcode is Opcode.CLOSE:
                    self.close_frame = ev
                if ev.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE):
                    self.events.append(ev)
            try:
                await self._flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        return self.events.popleft()

    async def recv(self):
        f = await self.recv_frame()
        assert f is not None, "connection closed"
        assert f.opcode is Opcode.TEXT, f
        return orjson.loads(f.data)

    async def recv_topic(self, prefix: str):
        while True:
            m = await self.recv()
            if m.get("topic", "").startswith(prefix):
                return m

    async def expect_closed(self) -> None:
        while True:
            f = await self.recv_frame()
            if f is None:
                return

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
        if self.stream is not self._stream0:
            await trio.aclose_forcefully(self._stream0)


async def http_get(fake: FakeBybit, target: str, ssl_context=None):
    """(status, parsed JSON body) of one GET with Connection: close."""
    if ssl_context is not None:
        stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", fake.port,
                                                     ssl_context=ssl_context)
    else:
        stream = await trio.open_tcp_stream("127.0.0.1", fake.port)
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n".encode())
        buf = b""
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                break
            buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, orjson.loads(body)


@pytest.fixture
async def fake():
    f = FakeBybit(linear_symbols=LINEAR, spot_symbols=SPOT, seed=7)
    async with trio.open_nursery() as nursery:
        await nursery.start(f.serve)
        yield f
        f.stop()


async def subscribed(fake, category, topics, req_id=None):
    ws = await WS.connect(fake.ws_url(category))
    msg = {"op": "subscribe", "args": topics}
    if req_id is not None:
        msg["req_id"] = req_id
    await ws.send(msg)
    ack = await ws.recv()
    assert ack["success"] is True, ack
    return ws


# ----------------------------------------------------------------------------- acks
async def test_linear_ack_and_pong(fake):
    with trio.fail_after(5):
        ws = await WS.connect(fake.ws_url("linear"))
        await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"], "req_id": "abc"})
        ack = await ws.recv()
        (conn,) = fake.connections
        assert list(ack) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert ack == {"success": True, "ret_msg": "", "conn_id": conn.conn_id,
                       "req_id": "abc", "op": "subscribe"}
        await ws.send({"op": "subscribe", "args": ["kline.1.BTCUSDT"]})
        assert await ws.recv() == {"success": True, "ret_msg": "", "conn_id": conn.conn_id,
                                   "req_id": "", "op": "subscribe"}
        await ws.send({"op": "ping"})
        assert await ws.recv() == {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                                   "req_id": "", "op": "ping"}
        await ws.send({"req_id": "x", "op": "ping"})
        assert await ws.recv() == {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                                   "req_id": "x", "op": "ping"}
        assert conn.pings_received == 2
        assert conn.topics == {"publicTrade.BTCUSDT", "kline.1.BTCUSDT"}
        assert conn.category == "linear"
        await ws.send({"op": "unsubscribe", "args": ["kline.1.BTCUSDT"], "req_id": "u"})
        assert await ws.recv() == {"success": True, "ret_msg": "", "conn_id": conn.conn_id,
                                   "req_id": "u", "op": "unsubscribe"}
        assert conn.topics == {"publicTrade.BTCUSDT"}


async def test_spot_ack_and_pong(fake):
    with trio.fail_after(5):
        ws = await WS.connect(fake.ws_url("spot"))
        await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
        ack = await ws.recv()
        conn = fake.connections[0]
        assert list(ack) == ["success", "ret_msg", "conn_id", "op"]
        assert ack == {"success": True, "ret_msg": "subscribe", "conn_id": conn.conn_id,
                       "op": "subscribe"}
        await ws.send({"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "r1"})
        assert await ws.recv() == {"success": True, "ret_msg": "subscribe",
                                   "conn_id": conn.conn_id, "req_id": "r1", "op": "subscribe"}
        await ws.recv_topic("tickers.")  # the snapshot
        await ws.send({"op": "ping"})
        assert await ws.recv() == {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                                   "op": "ping"}
        await ws.send({"op": "ping", "req_id": "p"})
        assert await ws.recv() == {"success": True, "ret_msg": "pong", "conn_id": conn.conn_id,
                                   "req_id": "p", "op": "ping"}


async def test_option_ack_and_pong_as_bybit_documents_them(fake):
    """Bybit's V5 docs (WebSocket connect: pong and subscription response of public option
    channels): ``{"args": ["<ms>"], "op": "pong"}`` and ``{"success", "conn_id", "data":
    {"failTopics", "successTopics"}, "type": "COMMAND_RESP"}``."""
    fake.add_symbol("option", "BTC-26DEC26-100000-C")
    with trio.fail_after(5):
        ws = await WS.connect(fake.ws_url("option"))
        await ws.send({"op": "subscribe", "args": ["publicTrade.BTC"]})
        ack = await ws.recv()
        conn = fake.connections[0]
        assert ack == {"success": True, "conn_id": conn.conn_id,
                       "data": {"failTopics": [], "successTopics": ["publicTrade.BTC"]},
                       "type": "COMMAND_RESP"}
        assert list(ack) == ["success", "conn_id", "data", "type"]
        await ws.send({"op": "subscribe", "args": ["tickers.BTC-26DEC26-100000-C",
                                                   "publicTrade.XRP"], "req_id": "r2"})
        ack = await ws.recv()
        assert ack == {"success": False, "conn_id": conn.conn_id, "req_id": "r2",
                       "data": {"failTopics": ["publicTrade.XRP"],
                                "successTopics": ["tickers.BTC-26DEC26-100000-C"]},
                       "type": "COMMAND_RESP"}
        await ws.recv_topic("tickers.")  # the snapshot
        await ws.send({"op": "ping"})
        pong = await ws.recv()
        assert list(pong) == ["args", "op"] and pong["op"] == "pong"
        (sent,) = pong["args"]  # the server's time in ms, as a string
        assert isinstance(sent, str) and abs(int(sent) - now_ms()) < 5_000
        await ws.send({"op": "unsubscribe", "args": ["publicTrade.BTC"], "req_id": "u"})
        assert await ws.recv() == {"success": True, "conn_id": conn.conn_id, "req_id": "u",
                                   "data": {"failTopics": [],
                                            "successTopics": ["publicTrade.BTC"]},
                                   "type": "COMMAND_RESP"}
        assert conn.topics == {"tickers.BTC-26DEC26-100000-C"}


async def test_linear_refuses_whole_batch_and_repeats(fake):
    with trio.fail_after(5):
        ws = await WS.connect(fake.ws_url("linear"))
        conn_id = None
        for bad in ["publicTrade.NOPEUSDT", "kline.2.BTCUSDT", "orderbook.500.BTCUSDT",
                    "publicTrade.NEWCOINUSDT"]:
            await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT", bad],
                           "req_id": "b"})
            ack = await ws.recv()
            conn_id = fake.connections[0].conn_id
            assert ack == {"success": False, "ret_msg": f"error:handler not found,topic:{bad}",
                           "conn_id": conn_id, "req_id": "b", "op": "subscribe"}
            assert fake.connections[0].topics == set()
        fake.refused_topics.add("tickers.ETHUSDT")
        await ws.send({"op": "subscribe", "args": ["tickers.ETHUSDT"]})
        ack = await ws.recv()
        assert ack["ret_msg"] == "error:handler not found,topic:tickers.ETHUSDT"
        assert ack["success"] is False
        await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT", "kline.D.BTCUSDT"]})
        assert (await ws.recv())["success"] is True
        await ws.send({"op": "subscribe", "args": ["publicTrade.ETHUSDT", "kline.D.BTCUSDT"]})
        assert await ws.recv() == {"success": False,
                                   "ret_msg": "error:already subscribed,topic:kline.D.BTCUSDT",
                                   "conn_id": conn_id, "req_id": "", "op": "subscribe"}
        assert fake.connections[0].topics == {"publicTrade.BTCUSDT", "kline.D.BTCUSDT"}


async def test_spot_errors(fake):
    with trio.fail_after(5):
        ws = await WS.connect(fake.ws_url("spot"))
        args = [f"kline.{i}.BTCUSDT" for i in ("1", "3", "5", "15", "30", "60", "120", "240",
                                               "360", "720", "D")]
        await ws.send({"op": "subscribe", "args": args})
        conn_id = fake.connections[0].conn_id
        assert await ws.recv() == {"success": False, "ret_msg": "args size >10",
                                   "conn_id": conn_id, "op": "subscribe"}
        await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT", "tickers.XXXUSDT"],
                       "req_id": "q"})
        assert await ws.recv() == {"success": False, "ret_msg": "Invalid symbol :[tickers.XXXUSDT]",
                                   "conn_id": conn_id, "req_id": "q", "op": "subscribe"}
        assert fake.connections[0].topics == set()
        await ws.send({"op": "subscribe", "args": args[:10]})
        assert (await ws.recv())["success"] is True
        assert len(fake.connections[0].topics) == 10


async def test_args_length_limit(fake):
    for i in range(2000):
        fake.add_symbol("linear", f"LONGNAMECOIN{i:05d}USDT")
    with trio.fail_after(10):
        ws = await WS.connect(fake.ws_url("linear"))
        total = 0
        batch = []
        for i in range(2000):
            t = f"publicTrade.LONGNAMECOIN{i:05d}USDT"
            if total + len(t) >= 21_000:
                break
            total += len(t)
            batch.append(t)
        await ws.send({"op": "subscribe", "args": batch})
        assert (await ws.recv())["success"] is True
        await ws.send({"op": "subscribe", "args": ["tickers.LONGNAMECOIN01999USDT"]})
        ack = await ws.recv()
        assert ack["success"] is False
        assert ack["ret_msg"] == "error:args length exceeded"


# ----------------------------------------------------------------------------- messages
async def test_public_trade_linear_shape(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["publicTrade.BTCUSDT"])
        sent = fake.trade("linear", "BTCUSDT", count=5, ts=T0 + 5)
        msg = await ws.recv()
        assert list(msg) == ["topic", "type", "ts", "data"]
        assert msg["topic"] == "publicTrade.BTCUSDT" and msg["type"] == "snapshot"
        assert isinstance(msg["ts"], int)
        assert msg["data"] == sent and len(sent) == 5
        for t in sent:
            assert set(t) == {"T", "s", "S", "v", "p", "L", "i", "BT", "RPI", "seq"}
            assert t["T"] == T0 + 5 and t["s"] == "BTCUSDT" and t["S"] in ("Buy", "Sell")
            assert re.fullmatch(r"\d+\.\d{2}", t["p"]) and re.fullmatch(r"\d+\.\d{3}", t["v"])
            assert t["L"] in ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")
            uuid.UUID(t["i"])
            assert t["BT"] is False and t["RPI"] is False and isinstance(t["seq"], int)
        one = fake.trade("linear", "BTCUSDT", price="16578.5", size="0.001", side="Buy",
                         ts=T0 + 6)
        assert one[0]["p"] == "16578.50" and one[0]["v"] == "0.001" and one[0]["S"] == "Buy"
        assert one[0]["L"] == "MinusTick"
        assert (await ws.recv())["data"] == one
        assert fake.history("linear", "BTCUSDT") == sent + one
        with pytest.raises(ValueError):
            fake.trade("linear", "BTCUSDT", count=1025)
        assert len(fake.trade("linear", "BTCUSDT", count=1024)) == 1024


async def test_public_trade_spot_shape_and_old_format():
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=["BTCUSDT"],
                  omit_optional_trade_fields=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(f.serve)
            ws = await subscribed(f, "spot", ["publicTrade.BTCUSDT"])
            sent = f.trade("spot", "BTCUSDT", count=3)
            msg = await ws.recv()
            assert msg["data"] == sent
            for t in sent:
                assert set(t) == {"T", "s", "S", "v", "p", "i"}
                assert t["i"].isdigit()
            f.stop()


async def test_kline_messages(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["kline.1.BTCUSDT", "kline.5.BTCUSDT"])
        a = fake.trade("linear", "BTCUSDT", price="100", size="1", ts=T0 + 1000)
        b = fake.trade("linear", "BTCUSDT", price="102", size="2", ts=T0 + 2000)
        msgs = [await ws.recv() for _ in range(4)]
        k1 = [m for m in msgs if m["topic"] == "kline.1.BTCUSDT"]
        assert len(k1) == 2
        m = k1[-1]
        assert list(m) == ["topic", "type", "ts", "data"] and m["type"] == "snapshot"
        (c,) = m["data"]
        assert c == {"start": T0, "end": T0 + 59_999, "interval": "1", "open": "100.00",
                     "close": "102.00", "high": "102.00", "low": "100.00", "volume": "3.000",
                     "turnover": "304", "confirm": False, "timestamp": c["timestamp"]}
        assert a[0]["T"] < b[0]["T"]
        # first trade after the boundary closes the candle: confirm first, then the new one
        fake.trade("linear", "BTCUSDT", price="99", size="1", ts=T0 + 60_000)
        m1 = await ws.recv()
        m2 = await ws.recv()
        assert m1["topic"] == "kline.1.BTCUSDT" and m1["data"][0]["confirm"] is True
        assert m1["data"][0]["close"] == "102.00" and m1["data"][0]["start"] == T0
        assert m2["data"][0]["start"] == T0 + 60_000 and m2["data"][0]["confirm"] is False
        m3 = await ws.recv()
        assert m3["topic"] == "kline.5.BTCUSDT"
        assert m3["data"][0]["volume"] == "4.000" and m3["data"][0]["confirm"] is False
        assert m3["data"][0]["start"] == T0 and m3["data"][0]["end"] == T0 + 299_999
        ks = fake.klines("linear", "BTCUSDT", "1")
        assert [k["start"] for k in ks] == [T0, T0 + 60_000]
        assert [k["confirm"] for k in ks] == [True, False]


async def test_period_alignment():
    # 2024-01-03 (a Wednesday) 12:34:56.789 UTC
    ts = 1704285296789
    assert period_start(ts, "W") == 1704067200000  # Monday 2024-01-01 00:00 UTC
    assert period_end(period_start(ts, "W"), "W") == 1704067200000 + 7 * 86_400_000 - 1
    assert period_start(ts, "M") == 1704067200000  # 2024-01-01
    assert period_end(1704067200000, "M") == 1706745600000 - 1  # 2024-02-01
    assert period_start(ts, "D") == 1704240000000
    assert period_start(ts, "15") == ts - ts % 900_000
    assert period_end(period_start(ts, "15"), "15") == period_start(ts, "15") + 899_999


async def test_tickers_linear_snapshot_then_delta(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["tickers.BTCUSDT"])
        snap = await ws.recv()
        assert snap["topic"] == "tickers.BTCUSDT" and snap["type"] == "snapshot"
        assert set(snap) == {"topic", "type", "data", "cs", "ts"}
        fields = {"symbol", "tickDirection", "price24hPcnt", "lastPrice", "prevPrice24h",
                  "highPrice24h", "lowPrice24h", "prevPrice1h", "markPrice", "indexPrice",
                  "openInterest", "openInterestValue", "turnover24h", "volume24h",
                  "nextFundingTime", "fundingRate", "bid1Price", "bid1Size", "ask1Price",
                  "ask1Size"}
        assert set(snap["data"]) == fields
        assert all(isinstance(v, str) for v in snap["data"].values())
        fake.set_ticker("linear", "BTCUSDT", lastPrice="70000.00", bid1Price="69999.90")
        fake.set_ticker("linear", "BTCUSDT", lastPrice="70000.00")  # no change: nothing sent
        fake.set_ticker("linear", "BTCUSDT", fundingRate=0.0002)
        d1 = await ws.recv()
        d2 = await ws.recv()
        assert d1["type"] == "delta" and d1["data"] == {"symbol": "BTCUSDT",
                                                        "lastPrice": "70000.00",
                                                        "bid1Price": "69999.90"}
        assert d2["data"] == {"symbol": "BTCUSDT", "fundingRate": "0.0002"}
        assert snap["cs"] < d1["cs"] < d2["cs"]
        # a new subscription starts with a full snapshot of the current state
        ws2 = await subscribed(fake, "linear", ["tickers.BTCUSDT"])
        snap2 = await ws2.recv()
        assert snap2["type"] == "snapshot" and snap2["data"]["lastPrice"] == "70000.00"


async def test_tickers_spot_snapshots_only(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "spot", ["tickers.ETHUSDT"])
        snap = await ws.recv()
        spot_fields = {"symbol", "lastPrice", "highPrice24h", "lowPrice24h", "prevPrice24h",
                       "volume24h", "turnover24h", "price24hPcnt", "usdIndexPrice"}
        assert snap["type"] == "snapshot" and set(snap["data"]) == spot_fields
        fake.set_ticker("spot", "ETHUSDT", lastPrice="3000.00")
        m = await ws.recv()
        assert m["type"] == "snapshot" and set(m["data"]) == spot_fields
        assert m["data"]["lastPrice"] == "3000.00" and m["cs"] > snap["cs"]


# ----------------------------------------------------------------------------- REST
async def test_rest_envelope_time_and_errors(fake):
    with trio.fail_after(5):
        status, body = await http_get(fake, "/v5/market/time")
        assert status == 200
        assert list(body) == ["retCode", "retMsg", "result", "retExtInfo", "time"]
        assert body["retCode"] == 0 and body["retMsg"] == "OK" and body["retExtInfo"] == {}
        assert set(body["result"]) == {"timeSecond", "timeNano"}
        assert abs(int(body["result"]["timeSecond"]) * 1000 - body["time"]) < 2000
        status, body = await http_get(fake, "/v5/market/recent-trade?category=linear&symbol=X")
        assert status == 200 and body["retCode"] == 10001 and body["retMsg"]
        status, body = await http_get(fake, "/v5/market/kline?category=spot&symbol=NOPE&interval=1")
        assert body["retCode"] == 10001
        status, _ = await http_get(fake, "/v5/market/nothing")
        assert status == 404
        assert ("/v5/market/time", {}) in fake.rest_requests
        assert ("/v5/market/recent-trade", {"category": "linear", "symbol": "X"}) \
            in fake.rest_requests


async def test_rest_instruments_pagination(fake):
    with trio.fail_after(5):
        symbols, cursor, pages = [], None, 0
        while True:
            q = "/v5/market/instruments-info?category=linear&limit=2"
            if cursor:
                q += f"&cursor={cursor}"
            _, body = await http_get(fake, q)
            res = body["result"]
            assert res["category"] == "linear" and len(res["list"]) <= 2
            symbols += [i["symbol"] for i in res["list"]]
            pages += 1
            cursor = res["nextPageCursor"]
            if not cursor:
                break
        assert pages == 4  # 5 trading + 2 non-trading
        assert symbols == [*LINEAR, "NEWCOINUSDT", "OLDCOINUSDT"]
        _, body = await http_get(fake, "/v5/market/instruments-info?category=linear")
        lst = body["result"]["list"]
        assert {i["status"] for i in lst} == {"Trading", "PreLaunch", "Closed"}
        btc = lst[0]
        assert btc["baseCoin"] == "BTC" and btc["quoteCoin"] == "USDT"
        assert btc["priceFilter"]["tickSize"] == "0.01"
        _, body = await http_get(fake, "/v5/market/instruments-info?category=linear&status=Trading")
        assert [i["symbol"] for i in body["result"]["list"]] == LINEAR
        _, body = await http_get(fake, "/v5/market/instruments-info?category=spot&limit=1")
        assert [i["symbol"] for i in body["result"]["list"]] == [*SPOT, "OLDCOINUSDT"]
        assert not body["result"].get("nextPageCursor")


async def test_rest_kline_newest_first_with_open_candle(fake):
    for m in range(5):
        fake.trade("linear", "ETHUSDT", price=str(100 + m), size="1", ts=T0 + m * 60_000 + 10)
        fake.trade("linear", "ETHUSDT", price=str(110 + m), size="2", ts=T0 + m * 60_000 + 20)
    with trio.fail_after(5):
        _, body = await http_get(fake, "/v5/market/kline?category=linear&symbol=ETHUSDT&interval=1")
        res = body["result"]
        assert res["category"] == "linear" and res["symbol"] == "ETHUSDT"
        rows = res["list"]
        assert [r[0] for r in rows] == [str(T0 + m * 60_000) for m in (4, 3, 2, 1, 0)]
        assert rows[0] == [str(T0 + 240_000), "104.00", "114.00", "104.00", "114.00", "3.00",
                           "332"]
        assert all(isinstance(x, str) for r in rows for x in r)
        _, body = await http_get(fake, "/v5/market/kline?category=linear&symbol=ETHUSDT"
                                       f"&interval=1&limit=2&end={T0 + 180_000}")
        assert [r[0] for r in body["result"]["list"]] == [str(T0 + 180_000), str(T0 + 120_000)]
        _, body = await http_get(fake, "/v5/market/kline?category=linear&symbol=ETHUSDT"
                                       f"&interval=1&start={T0 + 180_000}")
        assert len(body["result"]["list"]) == 2
        _, body = await http_get(fake, "/v5/market/kline?category=linear&symbol=ETHUSDT&interval=5")
        (row,) = body["result"]["list"]
        assert row == [str(T0), "100.00", "114.00", "100.00", "114.00", "15.00", "1630"]
        _, body = await http_get(fake, "/v5/market/kline?category=linear&symbol=ETHUSDT&interval=2")
        assert body["retCode"] == 10001


async def test_rest_recent_trade_limits(fake):
    fake.trade("linear", "BTCUSDT", count=1024)
    fake.trade("linear", "BTCUSDT", count=100)
    fake.trade("spot", "BTCUSDT", count=100)
    with trio.fail_after(5):
        _, body = await http_get(fake, "/v5/market/recent-trade?category=linear&symbol=BTCUSDT")
        lst = body["result"]["list"]
        assert body["result"]["category"] == "linear" and len(lst) == 500
        hist = fake.history("linear", "BTCUSDT")
        newest = hist[-1]
        assert lst[0] == {"execId": newest["i"], "symbol": "BTCUSDT", "price": newest["p"],
                          "size": newest["v"], "side": newest["S"], "time": str(newest["T"]),
                          "isBlockTrade": False, "isRPITrade": False, "seq": str(newest["seq"])}
        assert [t["execId"] for t in lst] == [t["i"] for t in reversed(hist[-500:])]
        _, body = await http_get(fake, "/v5/market/recent-trade?category=linear&symbol=BTCUSDT"
                                       "&limit=5000")
        assert len(body["result"]["list"]) == 1000
        _, body = await http_get(fake, "/v5/market/recent-trade?category=spot&symbol=BTCUSDT")
        assert len(body["result"]["list"]) == 60
        _, body = await http_get(fake, "/v5/market/recent-trade?category=spot&symbol=BTCUSDT"
                                       "&limit=100")
        assert len(body["result"]["list"]) == 60
        _, body = await http_get(fake, "/v5/market/recent-trade?category=spot&symbol=BTCUSDT"
                                       "&limit=3")
        assert len(body["result"]["list"]) == 3


async def test_rest_keep_alive_and_rate_limit(fake):
    fake.rest_rate_limit = (3, 5.0)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", fake.port)
        req = b"GET /v5/market/time HTTP/1.1\r\nHost: x\r\n\r\n"
        await stream.send_all(req * 2)  # pipelined on one keep-alive connection
        buf = b""
        while buf.count(b"HTTP/1.1 200") < 2 or not buf.endswith(b"}"):
            buf += await stream.receive_some(65536)
        await stream.aclose()
        status, body = await http_get(fake, "/v5/market/time")
        assert status == 200
        status, body = await http_get(fake, "/v5/market/time")
        assert status == 403 and body["retCode"] == 10006


async def test_unreachable(fake):
    with trio.fail_after(5):
        fake.reachable = False
        status, _ = await http_get(fake, "/v5/market/time")
        assert status == 503
        with pytest.raises(ConnectionError):
            await WS.connect(fake.ws_url("linear"))
        fake.reachable = True
        ws = await WS.connect(fake.ws_url("linear"))
        assert fake.connection_count("linear") == 1
        await ws.aclose()


async def test_ws_unknown_path_404(fake):
    with trio.fail_after(5):
        with pytest.raises(ConnectionError, match="404"):
            await WS.connect(f"ws://127.0.0.1:{fake.port}/v5/public/futures")


# ----------------------------------------------------------------------------- faults
async def test_drop_and_close_connections(fake):
    with trio.fail_after(5):
        a = await subscribed(fake, "linear", ["publicTrade.BTCUSDT"])
        b = await subscribed(fake, "spot", ["publicTrade.BTCUSDT"])
        assert fake.connection_count() == 2 and fake.total_connections_opened == 2
        assert fake.drop_connections("linear") == 1
        await a.expect_closed()
        assert a.close_frame is None  # no close frame: the TCP connection just died
        assert fake.connection_count("linear") == 0 and fake.connection_count("spot") == 1
        fake.close_connections("spot", code=1001)
        await b.expect_closed()
        assert b.close_frame is not None
        assert struct.unpack("!H", b.close_frame.data[:2])[0] == 1001
        assert fake.connection_count() == 0
        c = await subscribed(fake, "linear", ["publicTrade.BTCUSDT"])
        assert fake.total_connections_opened == 3
        await c.aclose()


async def test_ignore_pings_keeps_data(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["publicTrade.BTCUSDT"])
        fake.ignore_pings = True
        await ws.send({"op": "ping"})
        await trio.sleep(0.05)
        fake.trade("linear", "BTCUSDT")
        m = await ws.recv()
        assert m["topic"] == "publicTrade.BTCUSDT"  # no pong came before the trade
        assert fake.connections[0].pings_received == 1
        fake.ignore_pings = False
        await ws.send({"op": "ping"})
        assert (await ws.recv())["ret_msg"] == "pong"


async def test_send_raw(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["publicTrade.BTCUSDT"])
        fake.send_raw("linear", '{"topic":"publicTrade.BTC')
        fake.send_raw("linear", b"\x00\x01\x02", binary=True)
        fake.send_raw("linear", "x" * 300_000)
        fake.send_raw("spot", "not for linear")
        f1 = await ws.recv_frame()
        assert f1.opcode is Opcode.TEXT and f1.data == b'{"topic":"publicTrade.BTC'
        f2 = await ws.recv_frame()
        assert f2.opcode is Opcode.BINARY and f2.data == b"\x00\x01\x02"
        f3 = await ws.recv_frame()
        assert len(f3.data) == 300_000
        fake.trade("linear", "BTCUSDT")
        assert (await ws.recv())["topic"] == "publicTrade.BTCUSDT"


async def test_pause_topic(fake):
    with trio.fail_after(5):
        ws = await subscribed(fake, "linear", ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"])
        fake.pause_topic("linear", "publicTrade.BTCUSDT")
        fake.trade("linear", "BTCUSDT", count=3)
        fake.trade("linear", "ETHUSDT")
        m = await ws.recv()
        assert m["topic"] == "publicTrade.ETHUSDT"
        assert len(fake.history("linear", "BTCUSDT")) == 3
        fake.resume_topic("linear", "publicTrade.BTCUSDT")
        sent = fake.trade("linear", "BTCUSDT")
        assert (await ws.recv())["data"] == sent


# (the idle timeout's timing: test_idle_timeout_mock_clock, on virtual time)


async def test_idle_timeout_mock_clock(autojump_clock):
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=["BTCUSDT"])
    assert f.idle_timeout == 600.0
    async with trio.open_nursery() as nursery:
        await nursery.start(f.serve)
        with trio.fail_after(3600):
            ws = await subscribed(f, "linear", ["publicTrade.BTCUSDT"])
            t0 = trio.current_time()
            await trio.sleep(590)
            await ws.send({"op": "ping"})
            assert (await ws.recv())["ret_msg"] == "pong"
            await trio.sleep(590)
            assert f.connection_count() == 1
            f.trade("linear", "BTCUSDT")  # server data does not count as activity
            await ws.recv()
            await ws.expect_closed()
            assert trio.current_time() - t0 == pytest.approx(1190, abs=1)
            assert f.connection_count() == 0
        f.stop()


async def test_wait_subscribed_and_flush(fake):
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            got = []

            async def waiter():
                got.append(await fake.wait_subscribed("spot", ["tickers.BTCUSDT",
                                                               "publicTrade.BTCUSDT"]))
            nursery.start_soon(waiter)
            ws = await subscribed(fake, "spot", ["publicTrade.BTCUSDT"])
            await trio.sleep(0.01)
            assert not got
            await ws.send({"op": "subscribe", "args": ["tickers.BTCUSDT"]})
        assert got[0].conn_id == fake.connections[0].conn_id
        for _ in range(100):
            fake.trade("spot", "BTCUSDT", count=10)
        await fake.flush()
        assert not fake.connections[0].busy


# ----------------------------------------------------------------------------- load / TLS
async def test_run_market_count_and_rate(fake):
    with trio.fail_after(10):
        ws = await subscribed(fake, "linear", ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT",
                                               "tickers.BTCUSDT"])
        n = await fake.run_market("linear", ["BTCUSDT", "ETHUSDT"], rate=0, count=2000,
                                  trades_per_message=3)
        assert n == 2000
        trades = tickers = 0
        while trades < 2000:
            m = await ws.recv()
            if m["topic"].startswith("publicTrade"):
                trades += 1
                assert len(m["data"]) == 3
            elif m["topic"].startswith("tickers"):
                tickers += 1
        assert tickers >= 1  # the snapshot (and maybe a delta)
        assert len(fake.history("linear", "BTCUSDT")) == 3000


@pytest.mark.timeout(30)
async def test_run_market_paces_its_rate(autojump_clock):
    """256 messages/s for 0.5 s of virtual time: exactly 128, one every 1/256 s from the
    start, counted halfway between two sends. (Powers of two keep the virtual times exact in
    binary floating point.)"""
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=[])
    made_by: list[int] = []  # messages made by (i + 1/2) / 256 s

    async def watch(start: float) -> None:
        for i in range(128):
            await trio.sleep_until(start + (i + 0.5) / 256)
            made_by.append(len(f.history("linear", "BTCUSDT")))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            t = trio.current_time()
            nursery.start_soon(watch, t)
            n = await f.run_market("linear", ["BTCUSDT"], rate=256, duration=0.5,
                                   tickers=False)
            assert trio.current_time() - t == 0.5
    assert n == 128 == len(f.history("linear", "BTCUSDT"))
    assert made_by == list(range(1, 129))


@pytest.mark.timeout(10)
async def test_run_market_non_power_of_two_rate_does_not_spin(autojump_clock):
    """3,000 messages/s: k / 3000 is inexact in binary, so at a wake time the float count of
    due messages can round just below the next whole message. The generator must still make
    it rather than sleep until the current time forever. A spin keeps a task runnable, so
    virtual time stops and fail_after never fires: the real-time pytest-timeout mark turns
    the hang into a failure."""
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=[])
    with trio.fail_after(10):
        t = trio.current_time()
        n = await f.run_market("linear", ["BTCUSDT"], rate=3000, count=600, tickers=False)
    assert n == 600 == len(f.history("linear", "BTCUSDT"))
    # 600 messages at 3,000/s: the last one is due at 599 / 3000 s.
    assert trio.current_time() - t == pytest.approx(599 / 3000)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("pacing", ["batched", "even"])
async def test_run_market_even_pacing_writes_every_message_alone(pacing):
    """5,000 messages/s in real time. Batched pacing wakes on epoll's whole milliseconds and
    writes the ~5 messages due at once; even pacing (a timerfd) makes one message every
    0.2 ms and writes each on its own: writes == messages exactly. A timer cannot fire
    early, so 500 messages take at least 499 / 5000 s either way."""
    f = FakeBybit(linear_symbols=["BTCUSDT", "ETHUSDT"], spot_symbols=[], pacing=pacing)
    n = 500
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(f.serve)
            ws = await subscribed(f, "linear", ["publicTrade.BTCUSDT", "publicTrade.ETHUSDT"])
            await f.flush()
            (conn,) = f.connections
            writes0 = conn.writes
            t0 = trio.current_time()
            made = await f.run_market("linear", rate=5000, count=n, tickers=False)
            elapsed = trio.current_time() - t0
            await f.flush()
            writes = conn.writes - writes0
            got = [(await ws.recv_topic("publicTrade"))["data"][0]["s"] for _ in range(n)]
            f.stop()
    assert made == n
    assert got == ["BTCUSDT", "ETHUSDT"] * (n // 2)
    assert elapsed >= (n - 1) / 5000
    if pacing == "even":
        assert writes == n
    else:
        assert writes < n


async def test_tls_wss_and_https(tmp_path):
    server_ctx, client_ctx, _ = make_ssl_contexts(str(tmp_path))
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=["BTCUSDT"], ssl_context=server_ctx)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(f.serve)
            assert f.ws_url("linear").startswith("wss://")
            assert f.rest_url.startswith("https://")
            ws = await WS.connect(f.ws_url("linear"), ssl_context=client_ctx)
            await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            assert (await ws.recv())["success"] is True
            for _ in range(50):
                f.trade("linear", "BTCUSDT")
            for _ in range(50):
                assert (await ws.recv())["topic"] == "publicTrade.BTCUSDT"
            await f.run_market("linear", rate=0, count=500)
            for _ in range(500):
                await ws.recv_topic("publicTrade")
            status, body = await http_get(f, "/v5/market/time", ssl_context=client_ctx)
            assert status == 200 and body["retCode"] == 0
            await ws.aclose()
            f.stop()


async def test_tls_one_record_per_message(tmp_path):
    """Decrypt nothing: count TLS records on the raw TCP stream after the handshake."""
    server_ctx, client_ctx, _ = make_ssl_contexts(str(tmp_path))
    f = FakeBybit(linear_symbols=["BTCUSDT"], spot_symbols=["BTCUSDT"], ssl_context=server_ctx)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(f.serve)
            ws = await WS.connect(f.ws_url("linear"), ssl_context=client_ctx)
            await ws.send({"op": "subscribe", "args": ["publicTrade.BTCUSDT"]})
            await ws.recv()
            raw = ws.stream.transport_stream  # peek under trio's SSLStream
            ws.stream = raw  # from now on read the encrypted bytes ourselves
            await trio.sleep(0.05)
            for _ in range(20):
                f.trade("linear", "BTCUSDT")
            await f.flush()
            await trio.sleep(0.05)
            buf = b""
            with trio.move_on_after(0.2):
                while True:
                    buf += await raw.receive_some(65536)
            records = []
            i = 0
            while i + 5 <= len(buf):
                ctype, _ver, length = struct.unpack("!BHH", buf[i:i + 5])
                records.append((ctype, length))
                i += 5 + length
            app = [r for r in records if r[0] == 23]
            assert len(app) >= 20  # one per message (plus maybe session tickets)
            f.stop()


async def test_fixture_fake_bybit(fake_bybit):  # noqa: F811
    assert "1000PEPEUSDT" in fake_bybit.markets["linear"]
    for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"):
        assert s in fake_bybit.markets["spot"] and s in fake_bybit.markets["linear"]
    assert fake_bybit.ws_url("spot") == f"ws://127.0.0.1:{fake_bybit.port}/v5/public/spot"
    assert fake_bybit.rest_url == f"http://127.0.0.1:{fake_bybit.port}"
    with trio.fail_after(5):
        ws = await subscribed(fake_bybit, "linear", ["publicTrade.1000PEPEUSDT"])
        sent = fake_bybit.trade("linear", "1000PEPEUSDT")
        assert (await ws.recv())["data"] == sent
