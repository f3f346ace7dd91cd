"""Fault 7: SIGTERM under heavy load. ``python -m streamer run`` (a subprocess) streams
20 symbols at 20,000 publicTrade messages/s from the fake Bybit through
bybit.linear -> klines.from_trades -> storage (real redis-server) + console (JSON lines into
a file), and gets SIGTERM while the fake is still sending.

The fake runs in the test's own process (its own OS process, apart from the streamer), so its
full history is here to compare with: every sink's output is compared with what the fake
sent (the rates are printed, not asserted: throughput is bench/bench_e2e_streamer.py's). The
documented cut-off (docs/config.md): on SIGTERM the sources stop reading, and whatever they
had read reaches every sink, which drains its inbox and flushes. So per symbol the console
holds a prefix of the fake's trades (in order, none doubled, none skipped), and the storage
sink, configured never to flush on its own (huge flush_size and flush_interval), wrote at
shutdown exactly the state those same events make: each symbol's last ticker and its price,
and the closed klines the console printed (their values are the kline tests' business).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import msgspec
import trio
from pipelines import bybit_source
from runtime_log import counters_in

from streamer import clock
from streamer_bybit.simulator import FakeBybit
from streamer_bybit.simulator.__main__ import symbols as fake_symbols

N_SYMBOLS = 20
RATE = 20_000
LOAD_SECONDS = 4.0
#: The window the printed rates are taken over: from 0.5 s into the load (warm-up) to 1.5 s
#: before SIGTERM.
WINDOW = (0.5, LOAD_SECONDS - 1.5)
HISTORY = 50

#: After the bybit source (trades and tickers).
CONFIG = """
[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m", "5m"]
first_candle = "partial"

[[sinks]]
name = "storage"
type = "storage"
inputs = ["bybit", "klines"]
port = {port}
intervals = ["1m", "5m"]
history = {history}
flush_size = 10000000
flush_interval = 3600

[[sinks]]
name = "console"
type = "console"
inputs = ["bybit", "klines"]
"""


async def wait_for_log(path: Path, text: str, proc: trio.Process) -> None:
    while text not in path.read_text(errors="replace"):
        if proc.returncode is not None or proc.poll() is not None:
            raise AssertionError(f"streamer exited (rc={proc.returncode}) before logging "
                                 f"{text!r}:\n{path.read_text(errors='replace')[-3000:]}")
        await trio.sleep(0.05)


async def wait_all_subscribed(fake: FakeBybit, topics: list[str]) -> None:
    while not all(fake.subscribers("linear", t) for t in topics):
        await trio.sleep(0.01)


def read_console(path: Path) -> dict[str, list[dict]]:
    """data_type -> every item the console printed, in order."""
    out: dict[str, list[dict]] = {}
    for line in path.read_bytes().splitlines():
        envelope = msgspec.json.decode(line)
        assert envelope["channel"] == "linear", envelope
        out.setdefault(envelope["data_type"], []).extend(envelope["data"])
    return out


async def test_sigterm_under_load_every_sink_holds_what_the_fake_sent_up_to_the_cut_off(
    tmp_path: Path, redis_server, redis_client
):
    symbols = fake_symbols(N_SYMBOLS)
    topics = [f"{kind}.{s}" for kind in ("publicTrade", "tickers") for s in symbols]
    fake = FakeBybit(linear_symbols=symbols, spot_symbols=(), non_trading_instruments=False)
    log_path, console_path = tmp_path / "streamer.log", tmp_path / "console.jsonl"
    config = tmp_path / "streamer.toml"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            config.write_text(
                '[streamer]\nlog_level = "INFO"\n\n'
                + bybit_source(fake, symbols, streams=["trades", "tickers"])
                + CONFIG.format(port=redis_server.port, history=HISTORY))
            with open(log_path, "wb") as err, open(console_path, "wb") as out:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "streamer", "run", "-c", str(config)],
                    stdout=out, stderr=err)
            try:
                await wait_for_log(log_path, "pipeline running", proc)
                await wait_all_subscribed(fake, topics)
                market_scope = trio.CancelScope()

                async def market() -> None:
                    with market_scope:
                        await fake.run_market("linear", symbols, rate=RATE)

                start_ms = clock.now_ms()
                window_ms = (start_ms + WINDOW[0] * 1000, start_ms + WINDOW[1] * 1000)
                nursery.start_soon(market)
                await trio.sleep(LOAD_SECONDS)
                # Under load, and nothing flushed yet: the shutdown flush is what we check.
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert redis_client.hlen("bybit-streamer:price:linear") == 0
                proc.send_signal(signal.SIGTERM)
                with trio.fail_after(30):  # a hang, not a speed check
                    rc = await proc.wait()
                market_scope.cancel()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            nursery.cancel_scope.cancel()

    log = log_path.read_text(errors="replace")
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert "SIGTERM: stopping sources, flushing sinks" in log
    # Every sink finished its flush within shutdown_timeout, by the process's own clock.
    assert "did not finish flushing" not in log

    printed = read_console(console_path)
    trades, tickers = printed["trades"], printed.get("ticker", [])
    # For the record: the trades the fake made inside the window, and those of them that
    # reached the streamer before the cut-off, per second.
    window_s = (window_ms[1] - window_ms[0]) / 1000
    received = sum(1 for t in trades if window_ms[0] <= t["T"] < window_ms[1]) / window_s
    made = sum(1 for s in symbols for t in fake.history("linear", s)
               if window_ms[0] <= t["T"] < window_ms[1]) / window_s
    print(f"the streamer received {received:,.0f} trades/s of the fake's {made:,.0f} "
          f"(target {RATE:,}/s)")
    # No speed is asserted (a busy machine must not fail a correctness test). What is: the
    # cut-off fell mid-stream, the fake still sending when the streamer stopped reading, so
    # the checks below are about a cut under load, not a drained quiet stream.
    sent = sum(len(fake.history("linear", s)) for s in symbols)
    assert 0 < len(trades) < sent, (len(trades), sent)

    # Trades: per symbol a prefix of what the fake sent, in order, none doubled or skipped.
    for s in symbols:
        sent_ids = [t["i"] for t in fake.history("linear", s)]
        got_ids = [t["i"] for t in trades if t["s"] == s]
        assert got_ids and got_ids == sent_ids[:len(got_ids)], s
    assert len({t["i"] for t in trades}) == len(trades)

    # Storage wrote, at shutdown, the state of exactly the events the console printed.
    last_ticker = {t["symbol"]: t for t in tickers}
    assert set(last_ticker) == set(symbols)
    stored_tickers = redis_client.hgetall("bybit-streamer:tickers:linear")
    assert {k.decode(): msgspec.json.decode(v) for k, v in stored_tickers.items()} == last_ticker
    stored_prices = redis_client.hgetall("bybit-streamer:price:linear")
    assert {k.decode(): float(v) for k, v in stored_prices.items()} == {
        s: float(t["markPrice"]) for s, t in last_ticker.items()}

    closed = [k for k in printed.get("klines", []) if k["closed"]]
    for label, interval_ms in (("1m", 60_000), ("5m", 300_000)):
        for s in symbols:
            want = [k for k in closed if k["symbol"] == s and k["interval"] == interval_ms]
            key = f"bybit-streamer:history:linear:{label}:{s}"
            stored = [msgspec.json.decode(v) for v in redis_client.lrange(key, 0, -1)]
            assert stored == want[-HISTORY:], (label, s)
        last = redis_client.get(f"bybit-streamer:last-closed:linear:{label}")
        latest = {k["symbol"]: k for k in closed if k["interval"] == interval_ms}
        assert (msgspec.json.decode(last) if last else []) == [latest[s] for s in sorted(latest)]

    # Both sinks wrote every event they received: the same count, the console's lines.
    printed_events = sum(len(items) for items in printed.values())
    assert _final_count(log, "storage") == _final_count(log, "console") == printed_events


def _final_count(log: str, sink: str) -> int:
    """``written_events`` of a sink's ``final`` metrics line (the runtime logs it at exit)."""
    for line in log.splitlines():
        if f"final {sink}:" in line and "written_events" in counters_in(line, f"final {sink}:"):
            return counters_in(line, f"final {sink}:")["written_events"]
    raise AssertionError(f"no written_events in a 'final {sink}' line:\n{log[-3000:]}")
