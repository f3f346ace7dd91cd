"""Gap recovery against a REST recent-trade list that lags the WebSocket (as Bybit's may).

Every test runs on a MockClock: the fake's lag, its REST delay, the source's retries and its
recovery deadline are all trio time. The trades the source delivered are compared by id with
the fake's history: each trade exactly once and in order, or else a reported trade gap whose
range is exactly the trades that are missing.
"""

from __future__ import annotations

import logging
import random
import re

import pytest
import trio
from bybit.harness import Collector, make_source, run_source

from streamer._backoff import Backoff
from streamer._events import Ticker, Trade
from streamer._metrics import Metrics
from streamer_bybit.hold_book import HoldBook
from streamer_bybit.outlet import Outlet
from streamer_bybit.recovery import GapRecovery, RecoverySettings
from streamer_bybit.rest import BybitRest
from streamer_bybit.simulator import FakeBybit
from streamer_bybit.source import BybitLinearConfig

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]
_GAP_LINE = re.compile(r"trade gap for (\w+): trades between (\d+) and (\d+) \([\d.]+ s, (.+?)\)")


def ids(collector: Collector, symbol: str) -> list[str]:
    return [e.trade_id for e in collector.of(Trade) if e.symbol == symbol]


def history(fake: FakeBybit, symbol: str) -> list[str]:
    return [t["i"] for t in fake.history("linear", symbol)]


async def trade_forever(fake: FakeBybit, symbols: list[str], period: float = 0.2) -> None:
    while True:
        for symbol in symbols:
            fake.trade("linear", symbol, count=2)
        await trio.sleep(period)


def seed_backoff(source) -> None:
    """Reconnect delays drawn from a fixed seed, so every run has the same timeline."""
    for conn in source.connections:
        conn.backoff = Backoff(initial=0.5, maximum=30, rng=random.Random(5))


async def wait_sessions(source, n: int) -> None:
    while any(c.sessions < n for c in source.connections):
        await trio.sleep(0.01)


async def wait_gaps(collector: Collector, n: int) -> None:
    await collector.wait_for(lambda _ev: len(collector.gaps) >= n)


async def test_the_fakes_rest_lists_a_trade_only_lag_seconds_after_its_push(autojump_clock):
    fake = FakeBybit(linear_symbols=["BTCUSDT"], seed=2, history_limit=50)
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        rest = BybitRest(fake.rest_url)

        async def listed() -> list[str]:
            rows = await rest.recent_trades("linear", "BTCUSDT")
            return [r["execId"] for r in reversed(rows)]

        old = [t["i"] for t in fake.trade("linear", "BTCUSDT", count=60)]  # before any lag
        fake.rest_trade_lag = 2.0
        await trio.sleep(1)
        new = [t["i"] for t in fake.trade("linear", "BTCUSDT", count=3)]
        # the deque keeps the newest 50 trades: 47 old ones listed, the 3 new ones not yet
        assert await listed() == old[-47:]
        await trio.sleep(1.9)
        assert await listed() == old[-47:]  # 1.9 s after the push
        await trio.sleep(0.2)
        assert await listed() == old[-47:] + new
        fake.rest_trade_lag = (0.0, 4.0)  # drawn per request, seeded
        more = [t["i"] for t in fake.trade("linear", "BTCUSDT", count=2)]
        answers = []
        for _ in range(8):
            answers.append((await listed())[-1] == more[-1])
            await trio.sleep(0.5)
        assert answers[-1] and not all(answers)  # seen or not, by request, in the end seen
        nursery.cancel_scope.cancel()


# The seeded reconnect delays (Random(5)) are 0.311451, 0.741787 and 1.590387 s: the sessions
# between the drops are shorter than the 30 s stale_timeout, so the backoff is never reset.
# The market trades 2 trades per symbol every 0.2 s, so each outage misses 2, 4 and 8 ticks of
# 2 symbols x 2 trades (the ticks inside the 5 ms read wait + delay, plus the ones queued in the
# fake at the drop): 8 + 16 + 32 = 56 recovered trades, whatever the lag.
RECOVERED = 56
# REST is asked at the resubscribe, then 0.25, 0.75, 1.75, 3.75, 7.75, 11.75 s after it, per
# symbol. The first live trade arrives within a tick (0.2 s); REST reaches it once its lag has
# passed since that trade (with no live trade yet, an answer is trusted only after
# rest_lag_max, 5 s). Per symbol and drop:
#   0 s:   asked at 0 (no live trade yet), 0.25 -> 1 retry, 2 requests
#   2 s:   asked at 0 ... 3.75 (first >= 2.2)  -> 4 retries, 5 requests
#   10 s:  asked at 0 ... 11.75 (first >= 10.2) -> 6 retries, 7 requests
#   0-8 s: the lag is drawn per request from the fake's seed 3: 6, 10 and 10 retries over the
#          three drops (both symbols) -> 26 retries, 26 + 6 requests
# The totals are for 3 drops x 2 symbols.
EXPECTED_ASKS = {  # lag id: (recovery_retries, recent-trade requests)
    "0s": (3 * 2 * 1, 3 * 2 * 2),
    "2s": (3 * 2 * 4, 3 * 2 * 5),
    "10s": (3 * 2 * 6, 3 * 2 * 7),
    "0-8s": (26, 32),
}


@pytest.mark.parametrize(
    ("lag", "asks"),
    [(0.0, "0s"), (2.0, "2s"), (10.0, "10s"), ((0.0, 8.0), "0-8s")],
    ids=["0s", "2s", "10s", "0-8s"],
)
async def test_every_trade_once_in_order_whatever_the_rest_lag(
    lag, asks, collector, autojump_clock
):
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=3, rest_trade_lag=lag)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS)
            await run_source(nursery, source, collector)
            seed_backoff(source)
            with trio.CancelScope() as market:
                nursery.start_soon(trade_forever, fake, SYMBOLS)
                await trio.sleep(3)
                for drop in range(1, 4):
                    fake.drop_connections()  # trades still queued in the fake go with it
                    await wait_gaps(collector, 2 * drop)  # lost, then recovered
                    await trio.sleep(2)
                market.cancel()
            await collector.wait_for(
                lambda ev: all(len(ids(collector, s)) >= len(history(fake, s)) for s in SYMBOLS)
            )
            await trio.sleep(1)  # nothing more (a duplicate) may follow
            nursery.cancel_scope.cancel()
    for s in SYMBOLS:
        assert ids(collector, s) == history(fake, s)
    assert source.metrics["reconnects"] == 3
    assert source.metrics["trade_gaps"] == 0
    assert source.metrics["recovered_trades"] == RECOVERED
    assert [g.complete for g in collector.gaps if g.closed] == [True] * 3
    # REST answered (short of the held live trades while it lagged) and was asked again
    assert source.metrics["rest_failures"] == 0
    retries, requests = EXPECTED_ASKS[asks]
    assert source.metrics["recovery_retries"] == retries
    assert len([r for r in fake.rest_requests if r[0] == "/v5/market/recent-trade"]) == requests


async def test_lag_past_the_deadline_reports_exactly_the_missing_range(
    collector, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=4, rest_trade_lag=60.0)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS, recovery_deadline=20, rest_lag_max=2)
            await run_source(nursery, source, collector)
            seed_backoff(source)
            with trio.CancelScope() as market:
                nursery.start_soon(trade_forever, fake, SYMBOLS)
                await trio.sleep(70)  # REST lists what is older than 60 s: it shows the rate
                fake.drop_connections()
                await fake.wait_subscribed("linear", TOPICS)
                reconnected_at = trio.current_time()
                await wait_gaps(collector, 2)
                gave_up_after = trio.current_time() - reconnected_at
                await trio.sleep(2)
                market.cancel()
            await fake.flush()
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    # REST is asked at 0, 0.25, 0.75, 1.75, 3.75 s, then every 4 s up to 19.75 s; the next
    # ask (23.75 s) would be past recovery_deadline (20 s), so it gives up at 19.75 s.
    assert gave_up_after == pytest.approx(19.75, abs=1e-6)
    assert source.metrics["trade_gaps"] == 2
    assert collector.gaps[-1].closed and not collector.gaps[-1].complete
    ranges = {m[1]: (int(m[2]), int(m[3])) for m in _GAP_LINE.finditer(caplog.text)}
    sizes = {m[1]: m[4] for m in _GAP_LINE.finditer(caplog.text)}
    assert set(ranges) == set(SYMBOLS)
    for s in SYMBOLS:
        got, want = ids(collector, s), history(fake, s)
        # what arrived is the history with one hole: a prefix, then a suffix, once each
        i = next(k for k, (a, b) in enumerate(zip(got, want, strict=False)) if a != b)
        j = len(want) - (len(got) - i)
        assert got == want[:i] + want[j:] and j > i
        rows = fake.history("linear", s)
        assert ranges[s] == (rows[i - 1]["T"], rows[j]["T"])  # last before, first after
        estimate = int(re.fullmatch(r"about (\d+) trades", sizes[s])[1])
        assert abs(estimate - (j - i)) <= 0.1 * (j - i) + 2, (estimate, j - i)
    assert "REST recent-trade did not reach the first live trade (it lags)" in caplog.text


async def test_live_data_flows_while_rest_is_slow(collector, autojump_clock):
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=5)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS, streams=["trades", "tickers"])
            await run_source(nursery, source, collector)
            seed_backoff(source)
            fake.trade("linear", "BTCUSDT", count=3)  # only BTC has trades to recover
            await collector.wait_for(lambda ev: len(collector.of(Trade)) == 3)
            fake.rest_delay = 8.0  # under the source's 10 s REST timeout
            fake.pause_topic("linear", "publicTrade.BTCUSDT")
            fake.trade("linear", "BTCUSDT", count=2)  # missed: in REST only
            await fake.flush()
            fake.drop_connections()
            fake.resume_topic("linear", "publicTrade.BTCUSDT")
            await fake.wait_subscribed("linear", TOPICS)
            resubscribed_at = trio.current_time()
            await trio.sleep(0.5)
            fake.trade("linear", "BTCUSDT")  # held until BTC is recovered
            fake.trade("linear", "ETHUSDT", count=2)  # nothing to recover: flows
            fake.set_ticker("linear", "BTCUSDT", lastPrice="123.5")  # flows
            await collector.wait_for(lambda ev: len(ids(collector, "ETHUSDT")) == 2)
            await collector.wait_for(
                lambda ev: any(isinstance(e, Ticker) and e.fields.get("lastPrice") == 123.5
                               for e in ev)
            )
            # sent 0.5 s after the resubscribe, delivered at that instant: no wait on REST
            assert trio.current_time() - resubscribed_at == pytest.approx(0.5, abs=1e-6)
            assert len(ids(collector, "BTCUSDT")) == 3  # BTC's live trade is held
            await wait_gaps(collector, 2)
            # the REST request went out at the resubscribe and its answer took rest_delay
            assert trio.current_time() - resubscribed_at == pytest.approx(8.0, abs=1e-6)
            nursery.cancel_scope.cancel()
    assert ids(collector, "BTCUSDT") == history(fake, "BTCUSDT")
    assert ids(collector, "ETHUSDT") == history(fake, "ETHUSDT")
    assert source.metrics["recovered_trades"] == 2
    assert collector.gaps[-1].complete


async def test_held_trades_are_bounded_and_released_early(collector, caplog, autojump_clock):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=6)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=SYMBOLS, recovery_max_held=5)
            await run_source(nursery, source, collector)
            fake.trade("linear", "BTCUSDT", count=2)
            await collector.wait_for(lambda ev: len(ev) == 2)
            fake.rest_delay = 5.0
            fake.pause_topic("linear", "publicTrade.BTCUSDT")
            fake.trade("linear", "BTCUSDT", count=3)  # missed
            await fake.flush()
            fake.drop_connections()
            fake.resume_topic("linear", "publicTrade.BTCUSDT")
            await wait_sessions(source, 2)
            for _ in range(4):  # 8 live trades: past the bound of 5
                fake.trade("linear", "BTCUSDT", count=2)
                await trio.sleep(0.1)
            await collector.wait_for(lambda ev: len(ev) == 2 + 8)  # released before REST
            assert not [g for g in collector.gaps if g.closed]
            await wait_gaps(collector, 2)
            nursery.cancel_scope.cancel()
    want = history(fake, "BTCUSDT")
    # the live trades went first, the recovered ones after them, each exactly once
    assert ids(collector, "BTCUSDT") == want[:2] + want[5:] + want[2:5]
    assert source.metrics["recovery_hold_overflows"] == 1
    assert source.metrics["recovered_trades"] == 3
    assert source.metrics["trade_gaps"] == 0
    assert collector.gaps[-1].complete  # klines still get every trade before the gap closes
    assert "recovery held more than 5 live trades" in caplog.text


async def test_rest_that_never_answers_ends_at_the_deadline_with_its_cause(
    collector, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=7)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=["BTCUSDT"], recovery_deadline=15)
            await run_source(nursery, source, collector)
            seed_backoff(source)
            fake.trade("linear", "BTCUSDT")
            await collector.wait_for(lambda ev: len(ev) == 1)
            fake.rest_delay = 1000.0
            dropped_at = trio.current_time()
            fake.drop_connections()
            await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT"])
            resubscribed_at = trio.current_time()
            # the seeded first delay (0.311451 s) after the 5 ms coalescing wait of the read
            # that found the reset
            assert resubscribed_at - dropped_at == pytest.approx(0.005 + 0.311451, abs=1e-6)
            fake.trade("linear", "BTCUSDT")
            await wait_gaps(collector, 2)
            took = trio.current_time() - resubscribed_at
            nursery.cancel_scope.cancel()
    assert took == pytest.approx(15, abs=1e-6)  # recovery_deadline, from the resubscribe
    assert ids(collector, "BTCUSDT") == history(fake, "BTCUSDT")  # the held one came out
    assert source.metrics["trade_gaps"] == 1
    assert not collector.gaps[-1].complete
    assert "(REST failed: no answer in time)" in caplog.text
    assert "REST failed: )" not in caplog.text


async def test_recovery_requests_run_with_bounded_concurrency(collector, autojump_clock):
    symbols = [f"S{i:02d}USDT" for i in range(20)]
    fake = FakeBybit(linear_symbols=symbols, seed=8)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            source = make_source(fake, symbols=symbols)
            await run_source(nursery, source, collector)
            for s in symbols:
                fake.trade("linear", s)
            await collector.wait_for(lambda ev: len(ev) == 20)
            fake.rest_delay = 2.0
            fake.rest_in_flight_max = 0
            fake.drop_connections()
            await wait_sessions(source, 2)
            for s in symbols:
                fake.trade("linear", s)
            await wait_gaps(collector, 2)
            nursery.cancel_scope.cancel()
    assert fake.rest_in_flight_max == 8
    assert collector.gaps[-1].complete
    for s in symbols:
        assert [e.trade_id for e in collector.of(Trade) if e.symbol == s] == [
            t["i"] for t in fake.history("linear", s)
        ]


async def test_stopping_mid_recovery_emits_the_held_trades_and_reports_the_gap(
    collector, caplog, autojump_clock
):
    caplog.set_level(logging.WARNING)
    fake = FakeBybit(linear_symbols=SYMBOLS, seed=10)
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            async with trio.open_nursery() as source_nursery:
                source = make_source(fake, symbols=["BTCUSDT"])
                await run_source(source_nursery, source, collector)
                fake.trade("linear", "BTCUSDT")
                await collector.wait_for(lambda ev: len(ev) == 1)
                fake.rest_delay = 8.0
                fake.drop_connections()
                await wait_sessions(source, 2)
                fake.trade("linear", "BTCUSDT", count=2)
                while source.connections[0].recovery.held_count < 2:
                    await trio.sleep(0.01)
                source_nursery.cancel_scope.cancel()  # the pipeline stops
            nursery.cancel_scope.cancel()
    assert ids(collector, "BTCUSDT") == history(fake, "BTCUSDT")
    assert source.metrics["trade_gaps"] == 1
    assert "(stopped during recovery)" in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"recovery_deadline": 0}, "recovery_deadline: must be a positive"),
        ({"recovery_deadline": float("nan")}, "recovery_deadline: must be a positive"),
        ({"recovery_deadline": float("inf")}, "recovery_deadline: must be a positive"),
        ({"rest_lag_max": 30}, r"rest_lag_max \(30\) must be >= 0 and shorter"),
        ({"rest_lag_max": float("nan")}, "rest_lag_max"),
        ({"recovery_max_held": 0}, "recovery_max_held: expected at least 1, got 0"),
    ],
)
def test_recovery_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        BybitLinearConfig(symbols=["BTCUSDT"], **options)


def as_events(rows: list[dict]) -> list[Trade]:
    return [Trade("linear", t["s"], t["T"], t["S"], t["p"], t["v"], t["i"], t.get("L"),
                  t.get("BT"), t.get("RPI"), t.get("seq")) for t in rows]


async def test_gap_recovery_as_one_unit(autojump_clock):
    """GapRecovery needs a REST client and an outlet, no WebSocket: fed by hand here."""
    fake = FakeBybit(linear_symbols=["BTCUSDT"], seed=11, rest_trade_lag=3.0)
    collector = Collector()
    metrics = Metrics()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        logger = logging.getLogger("test.unit")
        outlet = Outlet(collector, HoldBook(metrics, 20_000), None, logger=logger, name="unit")
        recovery = GapRecovery("linear", ["BTCUSDT"], BybitRest(fake.rest_url),
                               RecoverySettings(), outlet, metrics=metrics, logger=logger,
                               name="unit")
        before = as_events(fake.trade("linear", "BTCUSDT", count=3))
        await outlet.send(before)  # what the reader does with every read
        await recovery.open_gap()  # the connection was lost
        fake.trade("linear", "BTCUSDT", count=4)  # missed: REST only (3 s later)
        recovery.begin()  # the next session
        live = as_events(fake.trade("linear", "BTCUSDT", count=2))
        await outlet.send(live)
        assert recovery.held_count == 2 and len(collector.events) == 3
        started = trio.current_time()
        await recovery.run()
        took = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert [e.trade_id for e in collector.events] == history(fake, "BTCUSDT")
    assert [(g.closed, g.complete) for g in collector.gaps] == [(False, True), (True, True)]
    # Asked at 0, 0.25, 0.75, 1.75 and 3.75 s (the retry delay doubles from 0.25 s): the
    # fifth ask is the first past the fake's 3 s REST lag.
    assert metrics["recovered_trades"] == 4 and metrics["recovery_retries"] == 4
    assert took == pytest.approx(3.75, abs=1e-9)
    assert outlet.book is not None and outlet.book.idle
    assert recovery.windows["BTCUSDT"].newest_ts == live[-1].ts
