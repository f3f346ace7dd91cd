"""FakeBybit: an in-process trio fake of Bybit's V5 public WebSocket and REST market API.

One TCP port serves both: the HTTP request head is read by hand; an ``Upgrade: websocket``
request on ``/v5/public/linear`` or ``/v5/public/spot`` becomes a WebSocket connection;
anything else is answered as REST. The parts, one job each:

* ``connection.py``: one WebSocket connection (its frame queue, writer, reader, idle watch);
* ``sessions.py``: the handshake, the client's ops, the subscriptions;
* ``rest.py``: the REST endpoints;
* ``generator.py``: trades, candles and tickers, made by hand or by ``run_market``;
* ``state.py``: what they share (markets, connections, options, the REST lag's record);
* this module: ``FakeBybit`` itself, serving the port, and the faults a test triggers.

Choices the fake makes where Bybit's behaviour is unknown or not worth imitating:

* Args of one connection must total under 21,000 characters (sum of topic lengths); a
  subscribe that would reach it is refused with ``error:args length exceeded`` and none
  of its topics subscribed.
* Spot refuses the whole batch too (like linear) when one topic is bad; the error is
  ``Invalid symbol :[<T>]``.  Already-subscribed topics give
  ``error:already subscribed,topic:<T>`` on both categories.  Unsubscribing a topic that is
  not subscribed is acknowledged with success.
* Only ``publicTrade``, ``tickers``, ``kline``, ``orderbook.{depth}`` (the books and their
  faults: books.py) and the categories' own topics (categories.py, liquidations.py) exist;
  any other topic is refused as unknown.
* A kline candle closes (``confirm: true`` is pushed) on the first trade of the symbol at
  or after the boundary, not by a timer; the confirm message for the old candle comes
  first, then the update of the new one, one candle per message.  Minutes without trades
  have no candle (REST does not fill gaps).
* The message-level ``ts`` is ``streamer.clock.now_ms()`` when the message is built
  (``stamp=True``: wall-clock ``time.time_ns() // 1_000_000`` instead, which benches use as
  the send time).  Trade ``T`` is the ``ts`` passed to ``trade()`` (default now).  With
  ``stamp=True`` ``run_market``'s trade ids also end in ``@<wall-clock microseconds>`` of the
  moment the message was built, since ``T``'s whole milliseconds would overstate a latency
  by 0-1 ms; an order-book message's ``seq`` is that microsecond instead of Bybit's cross
  sequence.
* Each ``trade()`` call has one ``seq`` shared by its trades (Bybit's seq may repeat).
* Idle connections (no client frame for ``idle_timeout`` seconds of trio time, default 600)
  are dropped without a close frame.  Client JSON that is not an object or has an
  unknown op gets ``{"success":false,"ret_msg":"error:unsupported op",...}``.
* Prices entered by hand are rounded to the symbol's tick, sizes to its quantity step.
* REST recent-trade lags the WebSocket by ``rest_trade_lag`` seconds of trio time (default 0,
  in step): a trade is listed only that long after it was pushed (or made, while its topic is
  paused). A ``(low, high)`` pair draws the lag of each request from a seeded uniform
  distribution, so successive answers may even go back in time, as a load-balanced endpoint
  can. Trades made before a lag was first set count as pushed long ago.
* ``rest_delay`` seconds (trio time) pass before any REST answer is written, plus
  ``rest_path_delay[path]`` for that path (one slow endpoint); paths in ``rest_failing``
  answer HTTP 503. ``rest_bodies[path]`` is a list of raw bodies: each request of that path
  takes the first one and gets it as it is with HTTP 200 (a malformed answer), until the list
  is empty and the normal answers resume.
"""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit

import trio

from .connection import ws_frame
from .generator import MarketGenerator
from .rest import RestApi
from .sessions import WebSocketSessions
from .tls import TLSServerStream


class FakeBybit(WebSocketSessions, RestApi, MarketGenerator):
    """Fake Bybit V5 public market data: WebSocket + REST on one port. See module doc."""

    # ------------------------------------------------------------------ serving
    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on host:port (0 = free port); ``task_status.started(port)``; run forever."""
        with trio.CancelScope() as scope:
            self._serve_scope = scope
            async with trio.open_nursery() as nursery:
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, self._handle, self._want_port,
                                      host=self.host)
                )
                self.port = listeners[0].socket.getsockname()[1]
                task_status.started(self.port)

    def stop(self) -> None:
        """Stop listening and drop every connection."""
        self.drop_connections()
        if self._serve_scope is not None:
            self._serve_scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        tls = None
        try:
            if self.ssl_context is not None:
                tls = TLSServerStream(stream, self.ssl_context)
                with trio.fail_after(10):
                    await tls.handshake()
            io = tls or stream
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = await io.receive_some(65536)
                    if not data:
                        return
                    buf += data
                    if len(buf) > 65536:
                        return
                end = buf.index(b"\r\n\r\n") + 4
                head, buf = buf[:end], buf[end:]
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, _version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if "websocket" in headers.get("upgrade", "").lower():
                    await self._run_ws(stream, tls, head, buf, target)
                    return
                length = int(headers.get("content-length", "0") or 0)
                while len(buf) < length:
                    data = await io.receive_some(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                keep = headers.get("connection", "").lower() != "close"
                self.rest_in_flight += 1
                self.rest_in_flight_max = max(self.rest_in_flight_max, self.rest_in_flight)
                try:
                    delay = self.rest_delay + self.rest_path_delay.get(urlsplit(target).path, 0.0)
                    if delay > 0:
                        await trio.sleep(delay)
                    status, body = self._rest(method, target)
                finally:
                    self.rest_in_flight -= 1
                reason = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
                          503: "Service Unavailable"}.get(status, "Error")
                resp = (
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep and status == 200 else 'close'}\r\n\r\n"
                ).encode() + body
                await io.send_all(resp)
                if not keep or status != 200:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError,
                ssl.SSLError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)


    async def flush(self) -> None:
        """Wait until everything queued so far is written to the sockets."""
        for c in list(self.connections):
            await c.wait_drained()

    # ------------------------------------------------------------------ faults
    def _pick(self, category):
        return [c for c in self.connections if category is None or c.category == category]

    def drop_connections(self, category: str | None = None) -> int:
        conns = self._pick(category)
        for c in conns:
            c.drop()
        return len(conns)

    def close_connections(self, category: str | None = None, code: int = 1000,
                          reason: str = "") -> int:
        conns = self._pick(category)
        for c in conns:
            c.close(code, reason)
        return len(conns)

    def send_raw(self, category: str | None, data: bytes | str, binary: bool = False) -> None:
        """Send one frame with ``data`` as payload (text frame unless ``binary``; bytes are
        sent as they are, so invalid UTF-8 in a text frame is possible)."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        frame = ws_frame(payload, 0x2 if binary else 0x1)
        for c in self._pick(category):
            c.enqueue(frame)

    def pause_topic(self, category: str, topic: str) -> None:
        self._paused.add((category, topic))

    def resume_topic(self, category: str, topic: str) -> None:
        self._paused.discard((category, topic))

