"""The fake's WebSocket sessions: the handshake, the client's ops (ping, subscribe,
unsubscribe) and who is subscribed to what.

Acks imitate Bybit's per category: linear always carries ``req_id`` (``""`` when none) and
an empty ``ret_msg`` on a successful (un)subscribe; spot carries ``req_id`` only when sent
and says ``subscribe`` / ``unsubscribe``. ``streamer_bybit.simulator.server`` lists the
refusals.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

import msgspec
from websockets.http11 import Request
from websockets.server import ServerProtocol

from . import categories as cats
from . import liquidations as liqs
from .books import book_depth_ok
from .connection import Connection, ws_frame
from .market import INTERVALS
from .state import FakeState

WS_PATHS = {"/v5/public/linear": "linear", "/v5/public/spot": "spot",
            "/v5/public/inverse": "inverse", "/v5/public/option": "option"}
MAX_ARGS_CHARS = 21_000
SPOT_MAX_ARGS = 10
_dumps = msgspec.json.encode
_loads = msgspec.json.decode


class WebSocketSessions(FakeState):
    """The WebSocket side of the fake."""

    async def _run_ws(self, stream, tls, head: bytes, rest: bytes, target: str) -> None:
        io = tls or stream
        if not self.reachable:
            return  # refused: the connection is closed without a response
        protocol = ServerProtocol(max_size=2**20)
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            return
        request = events[0]
        path = urlsplit(request.path).path
        category = WS_PATHS.get(path)
        if category is None:
            response = protocol.reject(404, "Not Found\n")
        else:
            response = protocol.accept(request)
        protocol.send_response(response)
        out = b"".join(protocol.data_to_send())
        if category is None or response.status_code != 101:
            await io.send_all(out)
            return
        # registered before the 101 goes out: a client that sees the 101 sees the connection
        conn = Connection(self, category, stream, tls, self._conn_id(), protocol)
        self.connections.append(conn)
        self.total_connections_opened += 1
        self._sub_changed.unpark_all()
        await conn.run(out, rest)

    def _conn_id(self) -> str:
        r = self._rng.getrandbits(80)
        alphabet = "abcdefghijklmnopqrstuv0123456789"
        s = "".join(alphabet[(r >> (5 * i)) & 31] for i in range(16))
        return f"{s}-{self._rng.randrange(1, 99)}"

    def forget(self, conn: Connection) -> None:
        """``conn`` is gone or closing: no more frames for it, its topics dropped."""
        if conn in self.connections:
            self.connections.remove(conn)
        for t in conn.topics:
            self._drop_sub(conn, t)
        self._sub_changed.unpark_all()

    def _drop_sub(self, conn: Connection, topic: str) -> None:
        lst = self._subs.get((conn.category, topic))
        if lst and conn in lst:
            lst.remove(conn)
            if topic.startswith("kline."):
                self._kline_subs[(conn.category, topic.rsplit(".", 1)[1])] -= 1

    # ------------------------------------------------------------------ client messages
    def _ack(self, conn: Connection, op: str, success: bool, ret_msg: str, req_id) -> bytes:
        if conn.category in cats.LINEAR_LIKE:
            msg = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id,
                   "req_id": "" if req_id is None else req_id, "op": op}
        else:
            msg = {"success": success, "ret_msg": ret_msg, "conn_id": conn.conn_id}
            if req_id is not None:
                msg["req_id"] = req_id
            msg["op"] = op
        return ws_frame(_dumps(msg))

    def on_client_message(self, conn: Connection, data) -> None:
        """Answer one text or binary frame ``conn`` received."""
        try:
            msg = _loads(data)
        except msgspec.DecodeError:
            msg = None
        if not isinstance(msg, dict):
            conn.enqueue(self._ack(conn, "", False, "error:unsupported op", None))
            return
        op = msg.get("op")
        req_id = msg.get("req_id")
        if op == "ping":
            conn.pings_received += 1
            if not self.ignore_pings:
                conn.enqueue(ws_frame(_dumps(cats.option_pong())) if conn.category == "option"
                             else self._ack(conn, "ping", True, "pong", req_id))
            return
        if op in ("subscribe", "unsubscribe"):
            args = msg.get("args")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                conn.enqueue(self._ack(conn, op, False, "error:args must be a list of strings",
                                        req_id))
                return
            if op == "subscribe":
                self._subscribe(conn, args, req_id)
            else:
                self._unsubscribe(conn, args, req_id)
            return
        conn.enqueue(self._ack(conn, str(op or ""), False, "error:unsupported op", req_id))

    def _topic_ok(self, category: str, topic: str) -> bool:
        if topic in self.refused_topics:
            return False
        verdict = cats.topic_ok(self.markets, category, topic)
        if verdict is not None:
            return verdict
        parts = topic.split(".")
        market = self.markets[category]
        if len(parts) == 2 and parts[0] in ("publicTrade", "tickers"):
            sym = parts[1]
        elif len(parts) == 3 and parts[0] == "orderbook" and book_depth_ok(category, parts[1]):
            sym = parts[2]
        elif len(parts) == 3 and parts[0] == "kline" and parts[1] in INTERVALS:
            sym = parts[2]
        else:
            return False
        inst = market.get(sym)
        return inst is not None and inst.status == "Trading"

    def _subscribe(self, conn: Connection, args: list[str], req_id) -> None:
        cat = conn.category
        ok_msg = "" if cat in cats.LINEAR_LIKE else "subscribe"
        if cat == "option":  # refuses the bad topics alone, in a COMMAND_RESP
            failed = [t for t in args if not self._topic_ok(cat, t) or t in conn.topics]
            conn.enqueue(ws_frame(_dumps(cats.option_ack(
                conn.conn_id, None if self.option_acks_without_req_id else req_id,
                "subscribe", not failed, args, failed))))
            args = [t for t in args if t not in failed]
        if cat == "spot" and len(args) > SPOT_MAX_ARGS:
            conn.enqueue(self._ack(conn, "subscribe", False, "args size >10", req_id))
            return
        for t in args:
            if not self._topic_ok(cat, t):
                err = (f"error:handler not found,topic:{t}" if cat in cats.LINEAR_LIKE
                       else f"Invalid symbol :[{t}]")
                conn.enqueue(self._ack(conn, "subscribe", False, err, req_id))
                return
        for t in args:
            if t in conn.topics:
                conn.enqueue(self._ack(conn, "subscribe", False,
                                        f"error:already subscribed,topic:{t}", req_id))
                return
        new = list(dict.fromkeys(args))
        if sum(map(len, conn.topics)) + sum(map(len, new)) >= MAX_ARGS_CHARS:
            conn.enqueue(self._ack(conn, "subscribe", False, "error:args length exceeded",
                                    req_id))
            return
        for t in new:
            conn.topics.add(t)
            self._subs[(cat, t)].append(conn)
        if cat != "option":  # acked above
            conn.enqueue(self._ack(conn, "subscribe", True, ok_msg, req_id))
        for t in new:
            kind, _, rest = t.partition(".")
            if kind == "tickers":
                conn.enqueue(self._ticker_frame(self.markets[cat][rest], snapshot=True,
                                                 fields=None))
            elif kind == "orderbook":
                conn.enqueue(ws_frame(_dumps(self.books.subscribed(cat, t, self._msg_ts()))))
            elif kind == "kline":
                interval, _, sym = rest.partition(".")
                self.markets[cat][sym].track(interval)
                self._kline_subs[(cat, sym)] += 1
            elif kind == "allLiquidation":
                liqs.on_subscribe(self, conn, t)
        self._sub_changed.unpark_all()

    def _unsubscribe(self, conn: Connection, args: list[str], req_id) -> None:
        cat = conn.category
        for t in args:
            if t in conn.topics:
                conn.topics.discard(t)
                self._drop_sub(conn, t)
        conn.enqueue(ws_frame(_dumps(cats.option_ack(conn.conn_id, req_id, "unsubscribe", True,
                                                      args, [])))
                     if cat == "option" else
                     self._ack(conn, "unsubscribe", True,
                               "" if cat in cats.LINEAR_LIKE else "unsubscribe", req_id))
        self._sub_changed.unpark_all()

    async def wait_subscribed(self, category: str, topics: Iterable[str]) -> Connection:
        """Wait until one live connection of ``category`` has all ``topics``; return it."""
        want = set(topics)
        while True:
            for c in self.connections:
                if c.category == category and want <= c.topics:
                    return c
            await self._sub_changed.park()

    async def wait_connections(self, category: str | None = None, n: int = 1) -> None:
        """Wait until at least ``n`` live connections (of ``category``) exist."""
        while self.connection_count(category) < n:
            await self._sub_changed.park()

    def subscribers(self, category: str, topic: str) -> list[Connection]:
        return list(self._subs.get((category, topic), ()))

