"""``streamer demo``: the example pipeline against the Bybit simulator, with no network.

The demo runs as a real subprocess in a network namespace of its own (``unshare -rn``) where
only the loopback interface exists, so any attempt to reach Bybit or anything else fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal

import pytest
import trio
from websocket.web_helpers import http_request, split_response

from streamer_bybit import demo

#: Real-time bound of one demo run (start-up of two interpreters on a busy machine included).
RUN_TIMEOUT = 90.0
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def _loopback_only_prefix() -> list[str]:
    """argv prefix running a command in a new network namespace with only ``lo`` (up)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2) for a loopback-only namespace")
    prefix = [unshare, "-rn", "sh", "-c", f'{ip} link set lo up && exec "$0" "$@"']
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    return prefix


def _demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamer", "demo", *args]


def _envelopes(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_demo_streams_trades_and_closed_klines_that_match_them_offline() -> None:
    prefix = _loopback_only_prefix()
    run = subprocess.run(
        [*prefix, *_demo_argv("--seconds", "4", "--intervals", "1s", "--format", "json",
                              "--rate", "10", "--symbols", ",".join(SYMBOLS))],
        capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stderr
    envelopes = _envelopes(run.stdout)
    trades: dict[str, list[dict]] = defaultdict(list)  # per symbol, in the order printed
    klines: dict[str, list[dict]] = defaultdict(list)
    for env in envelopes:
        assert env["channel"] == "linear"
        if env["data_type"] == "trades":
            for t in env["data"]:
                trades[t["s"]].append(t)
        elif env["data_type"] == "klines":
            for k in env["data"]:
                assert k["interval"] == 1000 and k["closed"] is True, k
                klines[k["symbol"]].append(k)
    assert sorted(trades) == SYMBOLS and sorted(klines) == SYMBOLS, run.stdout
    for symbol in SYMBOLS:
        # the simulator numbers its messages per symbol: nothing lost in between
        seqs = [t["seq"] for t in trades[symbol]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        # each closed kline is exactly the printed trades of its second, folded in order
        for k in klines[symbol]:
            own = [t for t in trades[symbol] if k["timestamp"] <= t["T"] < k["timestamp"] + 1000]
            assert own, k  # 5 trades/s per symbol: no second without trades
            prices = [float(t["p"]) for t in own]
            # the aggregator sums sizes exactly (decimal), then prints the sum as a float
            volume = float(sum(Decimal(t["v"]) for t in own))
            assert (k["open"], k["high"], k["low"], k["close"], k["volume"],
                    k["trade_count"]) == (prices[0], max(prices), min(prices), prices[-1],
                                          volume, len(own)), (k, own)
        starts = [k["timestamp"] for k in klines[symbol]]
        assert starts == list(range(starts[0], starts[0] + 1000 * len(starts), 1000))
    assert "streamer demo: simulated Bybit on 127.0.0.1:" in run.stderr


#: How long the Ctrl-C tests let the demo stream first: past trio's idle worker-thread timeout
#: (10 s), since a child forked from a worker thread got its parent-death signal then.
STREAM_BEFORE_CTRL_C_MS = 12_000


@pytest.mark.parametrize("to_group", [False, True], ids=["kill-INT-demo", "terminal-ctrl-c"])
def test_ctrl_c_stops_the_pipeline_cleanly_and_the_demo_exits_0(to_group) -> None:
    """Without --seconds the demo streams until Ctrl-C: a terminal signals the whole
    foreground process group, ``kill -INT`` the demo alone; either way the pipeline gets one
    SIGINT (a second would mean "stop now") and stops cleanly."""
    prefix = _loopback_only_prefix()
    with subprocess.Popen([*prefix, *_demo_argv("--format", "json")], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            assert proc.stdout is not None
            first_trade_ms = None
            while True:
                line = proc.stdout.readline()
                assert line, "the demo stopped streaming by itself"
                env = json.loads(line)
                if env["data_type"] != "trades":
                    continue
                stamp = env["data"][0]["T"]
                first_trade_ms = first_trade_ms or stamp
                if stamp - first_trade_ms >= STREAM_BEFORE_CTRL_C_MS:
                    break
            if to_group:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert err.count("SIGINT: stopping sources, flushing sinks") == 1, err
    assert "second signal" not in err and "SIGTERM" not in err, err


def test_without_the_kline_plugin_the_demo_says_what_it_needs() -> None:
    env = dict(os.environ, STREAMER_DISABLE_PLUGINS="aggregate")
    run = subprocess.run(_demo_argv("--seconds", "1"), capture_output=True, text=True,
                         env=env, timeout=RUN_TIMEOUT)
    assert run.returncode == demo.EXIT_CONFIG
    assert "klines.from_trades transform (streamer-aggregate)" in run.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--intervals", "60m"], "write 60m as 1h"),
    (["--symbols", "BTC-USDT"], "not a symbol: BTC-USDT"),
    (["--seconds", "0"], "must be > 0"),
    (["--rate", "1001"], "must be in (0, 1000]"),
])
def test_bad_options_are_refused_with_the_reason(argv, message, capsys) -> None:
    parser = argparse.ArgumentParser(prog="streamer demo")
    demo.configure(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_symbols_accept_commas_spaces_and_repeats() -> None:
    parser = argparse.ArgumentParser()
    demo.configure(parser)
    args = parser.parse_args(["--symbols", "btcusdt, ethusdt", "--symbols", "SOLUSDT"])
    assert args.symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert parser.parse_args([]).intervals == list(demo.DEFAULT_INTERVALS)


async def test_more_symbols_than_the_ceiling_are_refused_before_anything_starts(capsys) -> None:
    parser = argparse.ArgumentParser()
    demo.configure(parser)
    too_many = [f"C{i:04d}USDT" for i in range(demo.MAX_SYMBOLS + 1)]
    args = parser.parse_args(["--symbols", ",".join(too_many)])
    assert await demo.demo(args) == demo.EXIT_CONFIG
    assert f"at most {demo.MAX_SYMBOLS} symbols, got {demo.MAX_SYMBOLS + 1}" in (
        capsys.readouterr().err)


def _web_line(stderr) -> tuple[int, str | None]:
    """Read the demo's stderr up to its web view line: (port, the key it printed or None)."""
    while line := stderr.readline():
        found = re.search(r"web view at http://127\.0\.0\.1:(\d+)/ \(user demo, "
                          r"(?:key (\S+)|the key in \$STREAMER_WSS_AUTH_KEY)\)", line)
        if found:
            return int(found.group(1)), found.group(2)
    raise AssertionError("the demo ended without printing the web view's URL")


@pytest.mark.parametrize("own_key", [None, "my-own-demo-key-31415"], ids=["generated", "env"])
async def test_demo_web_serves_the_page_and_trades_to_the_printed_key(own_key) -> None:
    """``--web``: the page answers at the printed URL, and a WebSocket client logging in
    with the printed key (or the user's own, never printed) receives the simulator's
    trades, and its books (each whole first); a wrong key is refused."""
    # Here, not at the top: this module also runs with the Bybit plugin alone (check-packaging
    # deselects this test there), where the websocket plugin's client is not installed.
    from trio_websocket import ConnectionClosed, open_websocket_url

    env = {k: v for k, v in os.environ.items() if k != "STREAMER_WSS_AUTH_KEY"}
    if own_key:
        env["STREAMER_WSS_AUTH_KEY"] = own_key
    proc = subprocess.Popen(_demo_argv("--web", "--rate", "50", "--format", "json"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        with trio.fail_after(RUN_TIMEOUT):
            port, printed = await trio.to_thread.run_sync(_web_line, proc.stderr,
                                                          abandon_on_cancel=True)
            key = own_key or printed
            assert key is not None and (printed is None) == (own_key is not None)
            status, headers, body = split_response(await http_request(
                port, b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n"))
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b"<title>streamer</title>" in body and b"app.js" in body
            async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_message(json.dumps({"user": "demo", "key": key}))
                assert json.loads(await ws.get_message()) == {"status": "authenticated"}
                await ws.send_message(json.dumps(
                    {"op": "subscribe", "args": [{"data_type": "trades"}]}))
                while (message := json.loads(await ws.get_message())).get(
                        "data_type") != "trades":
                    pass
                assert message["channel"] == "linear" and message["data"][0]["s"] in SYMBOLS
                await ws.send_message(json.dumps(
                    {"op": "subscribe", "args": [{"data_type": "book"}]}))
                while (message := json.loads(await ws.get_message())).get(
                        "data_type") != "book":
                    pass
            book = message["data"][0]
            assert message["channel"] == "linear" and book["symbol"] in SYMBOLS
            assert book["kind"] == "snapshot" and book["bids"] and book["asks"]
            async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
                await ws.send_message(json.dumps({"user": "demo", "key": key + "x"}))
                with pytest.raises(ConnectionClosed) as refused:
                    while True:
                        await ws.get_message()
            assert refused.value.reason.code == 4401
    finally:
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, rest
    if printed:  # shown once, in that line only
        assert key not in rest
