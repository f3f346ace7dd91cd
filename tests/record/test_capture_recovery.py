"""A capture of a run with a reconnect: the trades gap recovery got from REST are recorded,
and the replay gives the live run's klines."""

from __future__ import annotations

from streamer import clock
from streamer._events import Kline, Trade
from streamer_bybit.capture_format import GAP, HOLDING, RECOVERED, capture_files, read_records

from .helpers import SYMBOLS, M, live_run, replay_run, sleep_until_wall_ms, wire_lines

TOPICS = [f"publicTrade.{s}" for s in SYMBOLS]


async def _market_with_a_reconnect(fake) -> None:
    """Four minutes of trades; near the end of the second, trades the socket never delivers
    (REST lists them), then the connection drops: recovery runs across the boundary."""
    m0 = (clock.now_ms() // M + 1) * M
    while (m0 // M) % 3 != 2:  # two minutes into a 3m candle: the same candles every run
        m0 += M
    for minute in range(4):
        base = m0 + minute * M
        for offset in (1_000, 20_000, 40_000):
            await sleep_until_wall_ms(base + offset)
            for symbol in SYMBOLS:
                fake.trade("linear", symbol, count=2)
        if minute == 1:
            await sleep_until_wall_ms(base + 58_000)
            for topic in TOPICS:
                fake.pause_topic("linear", topic)
            fake.trade("linear", "BTCUSDT", count=3)  # missed: in REST only
            fake.trade("linear", "ETHUSDT", count=2)
            await fake.flush()
            fake.drop_connections()
            for topic in TOPICS:
                fake.resume_topic("linear", topic)
    await sleep_until_wall_ms(m0 + 5 * M + 1_000)


def test_a_run_with_a_reconnect_replays_to_the_same_klines(tmp_path):
    live, metrics, fake = live_run(tmp_path, market=_market_with_a_reconnect,
                                   recover_gaps=True)
    source = metrics["bybit"]
    assert source["reconnects"] == 1 and source["recovered_trades"] == 5, source
    assert source.get("trade_gaps", 0) == 0
    kinds = [kind for f in capture_files(tmp_path) for kind, *_ in read_records(open(f, "rb"))]
    # lost and recovered; the new session held both symbols, each settled
    assert kinds.count(GAP) == 2 and kinds.count(HOLDING) == 1 and kinds.count(RECOVERED) == 2

    replayed, replay = replay_run(tmp_path)

    def klines(events):
        return [k for k in events if isinstance(k, Kline)]

    closed = [k for k in klines(live) if k.closed]
    # Per symbol the transform's 1m candles 0-4 (4 flat, closed by the timer) and 3m ones of
    # minute 0 and 1-3; the source's stream confirms 1m 0, 1 and 2 (each on the next
    # minute's first trade; 3 has none): 2 * (5 + 2 + 3).
    assert len(closed) == 20
    assert wire_lines(klines(replayed)) == wire_lines(klines(live))
    # the same trades in the same order: the recovered ones, then the live ones held meanwhile
    trades = [t for t in replayed if isinstance(t, Trade)]
    assert trades == [t for t in live if isinstance(t, Trade)]
    assert len(trades) == sum(len(fake.history("linear", s)) for s in SYMBOLS)
    assert replay.metrics()["bybit"]["replayed_recovered_trades"] == 5
