"""The core and the non-Bybit plugins work for an exchange that is not Bybit.

A plugin for a made-up exchange (tests/plugin_dists/streamer-madeup, installed through its
entry point like any third-party plugin) streams from its own fake exchange
(tests/madeup/exchange.py): integer trade ids, its own message shapes, a channel called
"futures", tickers with its own field names, first-candle history over its own protocol.
``madeup source -> klines.from_trades -> every sink`` runs in ``streamer run``, and every
sink's output is read back and compared with exact values. Anything that expects a Bybit
channel name ("linear"/"spot") or reads a Bybit-only field (a trade's tick direction, a
ticker's markPrice) makes the run lose or mangle data, and this test fail.

The script's clock starts at a whole second a few seconds ahead, so the first candles are
still open when their history comes; the trades of later candles are released once the
websocket sink showed the backfilled first candles (``updates = "every_trade"``). The run
waits for outputs; the candles close on the real clock, within about five seconds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import trio
import zstandard
from nats_server import read_stream
from server_process import free_port
from trio_websocket import open_websocket_url

from madeup.exchange import Deal, MadeupExchange, Quote

SECOND = 1000
STREAM = "MADEUP"


def script(t0: int) -> tuple[list[list[Deal]], list[Quote], dict[str, list[list[float]]]]:
    first = [
        Deal("ABC-PERP", 1, t0 + 400, "100.5", "2", "b"),
        Deal("XYZ-PERP", 2, t0 + 500, "10.0", "7", "s"),
        Deal("ABC-PERP", 3, t0 + 700, "101.0", "1", "s"),
    ]
    later = [
        Deal("ABC-PERP", 4, t0 + 1200, "99.5", "3", "s"),
        Deal("ABC-PERP", 5, t0 + 1800, "100.0", "0.5", "b"),
        Deal("XYZ-PERP", 6, t0 + 2500, "11.0", "1", "b"),
        Deal("ABC-PERP", 7, t0 + 3100, "102.25", "4", "b"),
    ]
    quotes = [Quote("ABC-PERP", t0 + 3200, "102.25", "102.2"),
              Quote("XYZ-PERP", t0 + 3300, "11.0", "10.9")]
    # The first second as the exchange saw it at t0 + 300, before our first trade; the bars
    # of other seconds must not leak into it.
    bars = {
        "ABC-PERP": [[t0 - SECOND, 1, 1, 1, 1, 99, 99], [t0, 100.0, 100.8, 99.9, 100.2, 5.0, 500.5],
                     [t0 + SECOND, 7, 7, 7, 7, 99, 99]],
        "XYZ-PERP": [[t0, 9.5, 10.5, 9.5, 10.2, 3.0, 30.0]],
    }
    return [first, later], quotes, bars


def expected_klines(t0: int) -> list[dict[str, Any]]:
    def k(symbol: str, start: int, o: float, h: float, low: float, c: float, v: float,
          n: int, turnover: float) -> dict[str, Any]:
        return {"symbol": symbol, "interval": SECOND, "timestamp": start, "open": o, "high": h,
                "low": low, "close": c, "volume": v, "trade_count": n, "closed": True,
                "turnover": turnover}

    return [
        # First candles: open from history, high/low over both, close ours (stamped after
        # the history's snapshot), volume and turnover = history's + ours (500.5 + 100.5 x 2
        # + 101 x 1; 30 + 10 x 7); trade_count counts ours.
        k("ABC-PERP", t0, 100.0, 101.0, 99.9, 101.0, 8.0, 2, 802.5),
        k("ABC-PERP", t0 + SECOND, 99.5, 100.0, 99.5, 100.0, 3.5, 2, 348.5),
        k("ABC-PERP", t0 + 3 * SECOND, 102.25, 102.25, 102.25, 102.25, 4.0, 1, 409.0),
        k("XYZ-PERP", t0, 9.5, 10.5, 9.5, 10.0, 10.0, 1, 100.0),
        k("XYZ-PERP", t0 + 2 * SECOND, 11.0, 11.0, 11.0, 11.0, 1.0, 1, 11.0),
    ]


def expected_trades(deals: list[Deal]) -> list[dict[str, Any]]:
    sides = {"b": "Buy", "s": "Sell"}
    return [{"T": d.t, "s": d.market, "S": sides[d.side], "v": d.q, "p": d.px, "i": str(d.id)}
            for d in deals]


CONFIG = """
[streamer]
log_level = "INFO"
shutdown_timeout = 15

[[sources]]
name = "madeup"
type = "madeup.exchange"
url = "{url}"
markets = ["ABC-PERP", "XYZ-PERP"]

[[transforms]]
name = "klines"
type = "klines.from_trades"
intervals = ["1s"]
fill_gaps = false
first_candle = "backfill"
updates = "every_trade"

[[sinks]]
type = "console"
format = "json"

[[sinks]]
type = "redis"
url = "{redis}"
main_key = "madeup"
stream = true

[[sinks]]
type = "storage"
url = "{redis}"
main_key = "madeup"
channels = ["futures"]
intervals = ["1s"]
history = 10
price_fields = {{ futures = "index" }}
flush_interval = 0.05

[[sinks]]
type = "websocket"
port = {ws_port}

[[sinks]]
type = "files"
dir = "{files}"

[[sinks]]
type = "nats"
url = "{nats}"
stream = "{stream}"
subject_prefix = "madeup"
"""


def by_kind(envelopes: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Items per data type, checking every envelope's channel is the source's own."""
    out: dict[str, list[dict[str, Any]]] = {}
    for env in envelopes:
        assert env["channel"] == "futures", env
        out.setdefault(env["data_type"], []).extend(env["data"])
    return out


def closed(klines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((k for k in klines if k["closed"]), key=lambda k: (k["symbol"], k["timestamp"]))


async def wait_logged(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    """Until ``text`` is in the log (the caller bounds the time); fails if streamer exits."""
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"streamer exited ({proc.returncode}):\n{log.read_text()}")
        await trio.sleep(0.05)


def read_files(root: Path) -> list[dict[str, Any]]:
    envelopes = []
    for path in sorted(root.rglob("*.jsonl.zst")):
        with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as reader:
            text = reader.read().decode()
        envelopes += [json.loads(line) for line in text.splitlines()]
    return envelopes


async def test_a_made_up_exchange_through_the_aggregator_and_every_sink(
    madeup_env, redis_server, redis_client, nats_server, tmp_path, nursery
) -> None:
    exchange = MadeupExchange(releases=[trio.Event(), trio.Event()])
    await nursery.start(exchange.serve)
    ws_port = free_port()
    config = tmp_path / "streamer.toml"
    config.write_text(CONFIG.format(url=exchange.url, redis=redis_server.url, ws_port=ws_port,
                                    files=tmp_path / "files", nats=nats_server.url,
                                    stream=STREAM))
    log = tmp_path / "streamer.log"
    stdout = tmp_path / "stdout.jsonl"
    with log.open("wb") as err, stdout.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                                stdout=out, stderr=err, env=madeup_env)
    live: list[dict[str, Any]] = []
    try:
        with trio.fail_after(60):
            await wait_logged(log, "pipeline running", proc)
            await exchange.listening.wait()
            async with open_websocket_url(f"ws://127.0.0.1:{ws_port}/") as ws:
                # The source's channel by name, and "every channel" (which must take in one
                # the sink never heard of); answered once we are a client.
                args = [{"channel": "futures", "data_type": "trades"}, {"data_type": "klines"},
                        {"data_type": "ticker"}]
                await ws.send_message(json.dumps({"op": "subscribe", "args": args}))
                assert json.loads(await ws.get_message()) == {
                    "op": "subscribe", "success": True, "args": args}
                now = int(time.time() * 1000)
                t0 = now - now % SECOND + 3 * SECOND
                exchange.parts, exchange.quotes, exchange.bars = script(t0)
                exchange.history_now = t0 + 300
                deals = [d for part in exchange.parts for d in part]
                exchange.releases[0].set()
                # The first candles, open, with their history merged in: then the rest.
                backfilled = {("ABC-PERP", t0, 100.0), ("XYZ-PERP", t0, 9.5)}
                while backfilled:
                    live.append(json.loads(await ws.get_message()))
                    for k in by_kind(live[-1:]).get("klines", []):
                        assert not k["closed"], k  # not before its history came
                        backfilled.discard((k["symbol"], k["timestamp"], k["open"]))
                exchange.releases[1].set()
                while True:
                    live.append(json.loads(await ws.get_message()))
                    got = by_kind(live)
                    if (len(got.get("trades", [])) >= len(deals)
                            and len(closed(got.get("klines", []))) >= 5
                            and len(got.get("ticker", [])) >= len(exchange.quotes)):
                        break
            proc.send_signal(signal.SIGTERM)
            returncode = await trio.to_thread.run_sync(proc.wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logged = log.read_text()
    assert returncode == 0, logged
    assert "Traceback" not in logged and "events lost" not in logged, logged
    assert exchange.listens == [{"action": "listen", "markets": ["ABC-PERP", "XYZ-PERP"]}]
    # One history question per symbol's first candle, in the exchange's own terms.
    assert sorted((a["market"], a["width"], a["from"]) for a in exchange.history_asks) == [
        ("ABC-PERP", SECOND, t0), ("XYZ-PERP", SECOND, t0)]

    trades = expected_trades(deals)
    klines = expected_klines(t0)
    tickers = [{"symbol": "ABC-PERP", "last": 102.25, "index": 102.2, "ts": t0 + 3200},
               {"symbol": "XYZ-PERP", "last": 11.0, "index": 10.9, "ts": t0 + 3300}]

    def check(name: str, envelopes: list[dict[str, Any]]) -> None:
        got = by_kind(envelopes)
        assert got.get("trades") == trades, name
        assert closed(got.get("klines", [])) == klines, name
        assert got.get("ticker") == tickers, name
        assert set(got) == {"trades", "klines", "ticker"}, name

    check("websocket", live)
    check("console", [json.loads(line) for line in stdout.read_text().splitlines()])
    check("files", read_files(tmp_path / "files"))
    redis_stream = []
    for data_type in ("trades", "klines", "ticker"):
        entries = redis_client.xrange(f"madeup:stream:futures:{data_type}")
        redis_stream += [json.loads(fields[b"data"]) for _, fields in entries]
    check("redis", redis_stream)
    messages = await trio.to_thread.run_sync(read_stream, nats_server.url, STREAM)
    check("nats", [msgspec.json.decode(m.data) for m in messages])
    subjects = {m.subject for m in messages}
    assert {"madeup.futures.trades.ABC-PERP", "madeup.futures.klines.1s.XYZ-PERP",
            "madeup.futures.ticker.ABC-PERP"} <= subjects

    # Storage: tickers, the price from the exchange's own field, closed klines' history.
    assert {k.decode(): json.loads(v) for k, v in
            redis_client.hgetall("madeup:tickers:futures").items()} == {
        t["symbol"]: t for t in tickers}
    assert redis_client.hgetall("madeup:price:futures") == {b"ABC-PERP": b"102.2",
                                                              b"XYZ-PERP": b"10.9"}
    for symbol in ("ABC-PERP", "XYZ-PERP"):
        stored = [json.loads(x) for x in
                  redis_client.lrange(f"madeup:history:futures:1s:{symbol}", 0, -1)]
        assert stored == [k for k in klines if k["symbol"] == symbol]
