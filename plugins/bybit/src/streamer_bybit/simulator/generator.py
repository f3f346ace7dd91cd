"""The fake's market: trades made by hand (``trade``) or by a seeded random walk
(``run_market``), the kline candles they build, tickers, and the publicTrade / kline /
tickers messages pushed to the subscribers.

``run_market``'s path builds its JSON by hand and keeps history as tuples: it is what the
benches drive at hundreds of thousands of trades per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import trio

from streamer.clock import now_ms

from . import categories as cats
from .connection import ws_frame
from .market import (
    INTERVALS,
    Candle,
    Instrument,
    fmt,
    period_end,
    period_start,
    to_int,
    trade_dict,
)
from .pacing import EvenTicker
from .state import FakeState

TRADES_PER_MESSAGE_MAX = 1024


class MarketGenerator(FakeState):
    """The market side of the fake."""

    def trade(self, category: str, symbol: str, price=None, size=None, side=None, ts=None,
              count: int = 1) -> list[dict]:
        """Make ``count`` trades (one publicTrade message); record them; return them."""
        inst = self._inst(category, symbol)
        if count < 1 or count > TRADES_PER_MESSAGE_MAX:
            raise ValueError(f"count must be 1..{TRADES_PER_MESSAGE_MAX}")
        if ts is None:
            ts = now_ms()
        rng = self._rng
        linear = category != "spot"  # UUID ids and tick directions (linear, inverse, option)
        pd, qd = inst.pd, inst.qd
        fixed_price = None if price is None else to_int(price, pd)
        fixed_size = None if size is None else to_int(size, qd)
        inst.seq += 1
        seq = inst.seq
        omit = self.omit_optional_trade_fields
        trades = []
        tracked = [(candles, period_start(ts, iv)) for iv, candles in inst.candles.items()]
        for _ in range(count):
            if fixed_price is None:
                p = inst.price + rng.randint(-2, 2) * inst.step()
                if p < 1:
                    p = 1
            else:
                p = fixed_price
            q = fixed_size if fixed_size is not None else inst.random_size(rng.random())
            s = side or ("Buy" if rng.random() < 0.5 else "Sell")
            if linear:
                tid = inst.next_uuid()
            else:
                inst.exec_num += 1
                tid = str(inst.exec_num)
            t = {"T": ts, "s": symbol, "S": s, "v": fmt(q, qd), "p": fmt(p, pd)}
            if linear:
                t["L"] = inst.tick_direction(p)
            t["i"] = tid
            if not omit:
                t["BT"] = False
                t["RPI"] = False
                t["seq"] = seq
            if category == "option":
                cats.option_trade_extras(inst, t)
            if p != inst.price:
                inst.prev_price = inst.price
            inst.price = p
            trades.append(t)
            inst.history.append(t)
            for candles, start in tracked:
                c = candles.get(start)
                if c is None:
                    candles[start] = Candle(start, p, q, ts)
                else:
                    c.add(p, q, ts)
        self._note_push(inst, count)
        msg_ts = self._msg_ts()
        topic = cats.trade_topic(inst)
        self._publish(category, topic,
                      {"topic": topic, "type": "snapshot", "ts": msg_ts, "data": trades})
        self._publish_klines(inst, ts, msg_ts)
        return trades

    def _publish_klines(self, inst: Instrument, ts: int, msg_ts: int) -> None:
        """After trades at ``ts``: confirm the previous candle on the first trade after the
        boundary, then push the live candle, for every subscribed kline topic."""
        category, symbol, subs = inst.category, inst.symbol, self._subs
        if inst.live_lo <= ts <= inst.live_hi and not self._kline_subs.get((category, symbol)):
            return  # same candles as before and nobody to tell (the common fast case)
        lo, hi = -1, 1 << 62
        for interval, candles in inst.candles.items():
            start = period_start(ts, interval)
            prev = inst.live.get(interval)
            topic = f"kline.{interval}.{symbol}"
            if prev is None or start > prev:
                inst.live[interval] = start
                if prev is not None and prev in candles and subs.get((category, topic)):
                    self._publish(category, topic, {
                        "topic": topic, "type": "snapshot", "ts": msg_ts,
                        "data": [inst.candle_dict(candles[prev], interval, True, msg_ts)]})
            live = inst.live[interval]
            lo, hi = max(lo, live), min(hi, period_end(live, interval))
            if subs.get((category, topic)):
                self._publish(category, topic, {
                    "topic": topic, "type": "snapshot", "ts": msg_ts,
                    "data": [inst.candle_dict(candles[live], interval, False, msg_ts)]})
        inst.live_lo, inst.live_hi = lo, hi

    def _fast_message(self, inst: Instrument, k: int, ts: int, msg_ts: int,
                      id_suffix: str = "") -> None:
        """run_market's path: like ``trade(count=k)`` with random values, JSON built by hand
        and history kept as tuples (``history()`` turns them into dicts)."""
        rnd = self._rng.random
        linear = inst.category == "linear"
        omit = self.omit_optional_trade_fields
        inst.seq += 1
        seq = inst.seq
        step = inst.step()
        sizes = inst.sizes
        nsizes = len(sizes)
        pstr = inst.price_str
        hist_append = inst.history.append
        if inst.tracked_ts == ts and inst.tracked_n == len(inst.candles):
            tracked = inst.tracked
        else:
            tracked = [(candles, period_start(ts, iv)) for iv, candles in inst.candles.items()]
            inst.tracked, inst.tracked_ts, inst.tracked_n = tracked, ts, len(inst.candles)
        sym = inst.symbol
        parts = []
        for _ in range(k):
            r = rnd()
            p = inst.price + (int(r * 5) - 2) * step
            if p < 1:
                p = 1
            q, qs = sizes[int(rnd() * nsizes)]
            side = "Buy" if r * 1000 % 1 < 0.5 else "Sell"
            ps = pstr(p)
            if linear:
                tick = inst.tick_direction(p)
                inst.exec_num += 1
                tid = inst.uuid_prefix + str(inst.exec_num) + id_suffix
                if omit:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"%s","i":"%s"}'
                                 % (ts, sym, side, qs, ps, tick, tid))
                else:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"%s","i":"%s",'
                                 '"BT":false,"RPI":false,"seq":%d}'
                                 % (ts, sym, side, qs, ps, tick, tid, seq))
            else:
                tick = None
                inst.exec_num += 1
                tid = str(inst.exec_num) + id_suffix
                if omit:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","i":"%s"}'
                                 % (ts, sym, side, qs, ps, tid))
                else:
                    parts.append('{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","i":"%s",'
                                 '"BT":false,"RPI":false,"seq":%d}'
                                 % (ts, sym, side, qs, ps, tid, seq))
            if p != inst.price:
                inst.prev_price = inst.price
                inst.price = p
            hist_append((ts, sym, side, qs, ps, tick, tid, None if omit else seq))
            for candles, start in tracked:
                c = candles.get(start)
                if c is None:
                    candles[start] = Candle(start, p, q, ts)
                else:
                    c.add(p, q, ts)
        self._note_push(inst, k)
        topic = "publicTrade." + sym
        category = inst.category
        subs = self._subs.get((category, topic))
        if subs and (category, topic) not in self._paused:
            frame = ws_frame(('{"topic":"%s","type":"snapshot","ts":%d,"data":[%s]}'
                              % (topic, msg_ts, ",".join(parts))).encode())
            for c in subs:
                c.enqueue(frame)
        self._publish_klines(inst, ts, msg_ts)

    def set_ticker(self, category: str, symbol: str, **fields) -> None:
        """Update ticker fields (values become strings); push delta (linear, only changed
        fields; nothing if none changed) or snapshot (spot)."""
        inst = self._inst(category, symbol)
        changed = {}
        for k, v in fields.items():
            v = str(v)
            if inst.ticker.get(k) != v:
                inst.ticker[k] = v
                changed[k] = v
        topic = "tickers." + symbol
        subs = self._subs.get((category, topic))
        if not subs or (category, topic) in self._paused:
            return
        if category in cats.LINEAR_LIKE:
            if not changed:
                return
            frame = self._ticker_frame(inst, snapshot=False, fields=changed)
        else:
            frame = self._ticker_frame(inst, snapshot=True, fields=None)
        for c in subs:
            c.enqueue(frame)

    def ticker(self, category: str, symbol: str) -> dict:
        return dict(self._inst(category, symbol).ticker)

    def history(self, category: str, symbol: str) -> list[dict]:
        return [trade_dict(t) for t in self._inst(category, symbol).history]

    def klines(self, category: str, symbol: str, interval: str) -> list[dict]:
        """The fake's candles (oldest first) as WS-style dicts; ``confirm`` is True for all
        but the newest."""
        if interval not in INTERVALS:
            raise ValueError(f"bad interval {interval!r}")
        inst = self._inst(category, symbol)
        candles = inst.aggregate(interval)
        starts = sorted(candles)
        ts = now_ms()
        return [inst.candle_dict(candles[s], interval, s != starts[-1], ts) for s in starts]

    async def run_market(self, category: str, symbols: Iterable[str] | None = None,
                         rate: float = 1000.0, trades_per_message: int = 1,
                         duration: float | None = None, count: int | None = None,
                         tickers: bool = True, wait_for_subscribers: bool = False) -> int:
        """Seeded random walk: ``rate`` publicTrade messages/s in total over ``symbols``
        (round-robin), ``rate <= 0`` = flat out (as fast as the sockets take it).  Pacing
        (``FakeBybit.pacing``): "batched" sleeps with ``trio.sleep_until`` (whole
        milliseconds through epoll) and makes the whole backlog due at each wake-up before
        the next checkpoint, so several messages share a write; "even" (real time only, a
        Linux timerfd: :class:`~streamer_bybit.simulator.pacing.EvenTicker`) makes one message
        every ``1 / rate`` s and writes every message on its own.  Tickers (if asked) get a
        delta per symbol at most every 100 ms.  Stops after ``count`` messages or
        ``duration`` seconds (trio time); returns the number of messages made.
        ``wait_for_subscribers``: idle while no connection of the category is subscribed to
        anything."""
        syms = list(symbols) if symbols is not None else [
            s for s, i in self.markets[category].items() if i.status == "Trading"]
        if not syms:
            return 0
        insts = [self._inst(category, s) for s in syms]
        start = trio.current_time()
        stop_at = math.inf if duration is None else start + duration
        sent = 0
        paced = 0  # messages made since ``start`` (reset after waiting for subscribers)
        k = 0
        last_ticker = {s: -math.inf for s in syms}
        n_syms = len(syms)
        even = rate > 0 and self.pacing == "even"
        ticker: EvenTicker | None = None
        try:
            while True:
                now = trio.current_time()
                if now >= stop_at or (count is not None and sent >= count):
                    return sent
                if wait_for_subscribers and not any(
                        c.category == category and c.topics for c in self.connections):
                    if ticker is not None:
                        ticker.close()
                        ticker = None
                    await self._sub_changed.park()
                    start, paced = trio.current_time(), 0
                    continue
                if even:
                    if ticker is None:
                        ticker = EvenTicker(1.0 / rate)
                    due = 0
                    with trio.move_on_at(stop_at):
                        due = min(await ticker.wait(), 10_000)
                    if not due:
                        continue
                    now = trio.current_time()
                    if count is not None:
                        due = min(due, count - sent)
                else:
                    due = self._batched_due(rate, now, start, paced)
                    if not due:
                        await trio.sleep_until(min(stop_at, start + paced / rate))
                        continue
                    if count is not None:
                        due = min(due, count - sent)
                sent += due
                paced += due
                await self._make_messages(insts, due, k, tickers, last_ticker, now,
                                          trades_per_message)
                k = (k + due) % n_syms
        finally:
            if ticker is not None:
                ticker.close()

    @staticmethod
    def _batched_due(rate: float, now: float, start: float, paced: int) -> int:
        """Messages due now under batched pacing (0: sleep until the next one)."""
        if rate <= 0:
            return 512
        due = int((now - start) * rate) + 1 - paced
        if due <= 0:
            if now < start + paced / rate:
                return 0
            # Woken at the due time, float rounding can still make due 0 (3,000/s:
            # 0.001 * 3000 = 2.9999...); the message is due, so make it, or the loop would
            # sleep until the current time forever.
            return 1
        return min(due, 10_000)

    async def _make_messages(self, insts: list[Instrument], due: int, k: int, tickers: bool,
                             last_ticker: dict[str, float], now: float,
                             trades_per_message: int) -> None:
        """``due`` messages round-robin from ``insts[k]``, then wait for slow connections."""
        ts = now_ms()
        msg_ts = self._msg_ts()
        id_suffix = f"@{time.time_ns() // 1000}" if self.stamp else ""
        fast = self._fast_message
        n_syms = len(insts)
        for _ in range(due):
            inst = insts[k]
            k += 1
            if k == n_syms:
                k = 0
            fast(inst, trades_per_message, ts, msg_ts, id_suffix)
            if tickers and now - last_ticker[inst.symbol] >= 0.1:
                last_ticker[inst.symbol] = now
                self._random_ticker(inst)
        for c in self.connections:
            if c.backlogged:
                await c.wait_space()
        await trio.lowlevel.checkpoint()

    def _random_ticker(self, inst: Instrument) -> None:
        p, pd = inst.price, inst.pd
        f = {"lastPrice": fmt(p, pd)}
        if inst.category == "linear":
            f.update(bid1Price=fmt(max(1, p - 1), pd), ask1Price=fmt(p, pd),
                     markPrice=fmt(p, pd),
                     bid1Size=fmt(self._rng.randint(1, 5000), inst.qd),
                     ask1Size=fmt(self._rng.randint(1, 5000), inst.qd))
        self.set_ticker(inst.category, inst.symbol, **f)


