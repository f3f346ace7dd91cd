"""``streamer tail`` against a real sink."""

from __future__ import annotations

import argparse
import io

import msgspec
import pytest
import trio

from streamer_websocket import tail
from websocket.helpers import StartSink, kline, price, ticker, trade

KEY_ENV = "STREAMER_TEST_TAIL_KEY"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamer tail")
    tail.configure(parser)
    return parser.parse_args(list(argv))


async def run_tail(args: argparse.Namespace) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = await tail.tail(args, out, err)
    return status, out.getvalue(), err.getvalue()


async def test_tail_prints_live_klines_for_its_subscription(start_sink: StartSink) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([kline("BTCUSDT", 100.0)])
        args = parse("--url", sink.url, "--type", "klines", "--symbol", "BTCUSDT", "--count", "2")
        result: list[tuple[int, str, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _collect(result, args))
            await sink.wait_for_clients(1)
            (client,) = sink.clients
            while client.subscription is None:  # tail's subscribe not processed yet
                await trio.sleep(0.001)
            # One batch: one message (--count counts messages).
            await inbox.put([kline("ETHUSDT", 1.0), trade("BTCUSDT"), kline("BTCUSDT", 101.0),
                             kline("BTCUSDT", 102.0, closed=True)])
        status, out, err = result[0]
        assert status == 0, err
        lines = out.splitlines()
        # the latest state once (sent on connect and again on subscribe), then live klines
        assert len(lines) == 3 and " C 100 " in lines[0], lines
        assert all(line.startswith("linear klines  BTCUSDT") for line in lines), lines
        assert " C 101 " in lines[-2] and "open" in lines[-2]
        assert " C 102 " in lines[-1] and "closed" in lines[-1]
        assert "subscribe ok" in err


async def _collect(result: list, args: argparse.Namespace) -> None:
    result.append(await run_tail(args))


async def test_tail_json_output(start_sink: StartSink) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        args = parse("--url", sink.url, "--json", "--count", "1")
        result: list[tuple[int, str, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _collect(result, args))
            await sink.wait_for_clients(1)
            await inbox.put([trade("BTCUSDT", 7)])
        status, out, _ = result[0]
        assert status == 0
        env = msgspec.json.decode(out.strip())
        assert env["channel"] == "linear" and env["data_type"] == "trades"
        assert env["data"][0]["i"] == "t7"


async def test_tail_authenticates_with_user_and_env_key(
    start_sink: StartSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k3y")
    with trio.fail_after(10):
        sink, inbox = await start_sink(auth_user="bob", auth_key_env=KEY_ENV)
        await inbox.put([kline()])
        status, out, err = await run_tail(
            parse("--url", sink.url, "--user", "bob", "--key-env", KEY_ENV, "--count", "1")
        )
        assert status == 0, err
        assert "authenticated" in err and "klines" in out


async def test_tail_wrong_key_or_no_user_exits_1(
    start_sink: StartSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "k3y")
    with trio.fail_after(10):
        sink, _ = await start_sink(auth_user="bob", auth_key_env=KEY_ENV)
        monkeypatch.setenv(KEY_ENV, "wrong")
        status, out, err = await run_tail(
            parse("--url", sink.url, "--user", "bob", "--key-env", KEY_ENV))
        assert status == 1 and out == ""
        assert "authentication failed: Authentication failed" in err
        status, _, err = await run_tail(parse("--url", sink.url, "--symbol", "BTCUSDT"))
        assert status == 1 and "use --user" in err
        monkeypatch.delenv(KEY_ENV)
        status, _, err = await run_tail(
            parse("--url", sink.url, "--user", "bob", "--key-env", KEY_ENV))
        assert status == 1 and f"{KEY_ENV} is empty" in err


async def test_tail_reports_the_server_closing(start_sink: StartSink) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        result: list[tuple[int, str, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _collect(result, parse("--url", sink.url)))
            await sink.wait_for_clients(1)
            await inbox.put([trade()])
            inbox.close()
        status, out, err = result[0]
        assert status == 1 and "trades" in out
        assert "closed the connection (1001 GOING_AWAY: server shutting down)" in err


async def test_tail_cannot_connect_exits_1() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # a port with nobody listening
    args = parse("--url", f"ws://127.0.0.1:{port}/")
    with trio.fail_after(10):
        status, _, err = await run_tail(args)
    assert status == 1 and "cannot connect to ws://127.0.0.1:" in err
    # The synchronous entry point the CLI calls behaves the same.
    with trio.fail_after(10):
        assert await trio.to_thread.run_sync(tail.main, args) == 1


def test_subscription_request_from_arguments() -> None:
    assert tail.subscription_request(parse()) is None
    assert tail.subscription_request(parse("--channel", "spot", "--symbol", "A", "B",
                                           "--symbol", "C")) == {
        "op": "subscribe", "args": [{"channel": "spot", "symbols": ["A", "B", "C"]}]}


async def test_tail_filters_apply_to_the_snapshot_sent_on_connect(start_sink: StartSink) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([ticker("BTCUSDT", 1.0), price("BTCUSDT", 5.0), kline("ETHUSDT", 7.0),
                         ticker("ETHUSDT", 2.0), price("ETHUSDT", 6.0)])
        while len(sink.snapshot) < 5:
            await trio.sleep(0.001)
        # The connect snapshot starts with tickers: none may be printed.
        status, out, err = await run_tail(parse("--url", sink.url, "--type", "price",
                                                "--count", "1"))
        assert status == 0, err
        lines = out.splitlines()
        assert lines and all(line.split()[1] == "price" for line in lines), lines
        status, out, err = await run_tail(parse("--url", sink.url, "--json", "--symbol",
                                                "ethusdt", "--count", "2"))
        assert status == 0, err
        for line in out.splitlines():
            env = msgspec.json.decode(line)
            assert {item["symbol"] for item in env["data"]} == {"ETHUSDT"}, env


async def test_tail_prints_the_latest_kline_once_not_again_from_the_subscribe_snapshot(
    start_sink: StartSink,
) -> None:
    with trio.fail_after(10):
        sink, inbox = await start_sink()
        await inbox.put([kline("ETHUSDT", 1.0), kline("BTCUSDT", 5.0)])
        while len(sink.snapshot) < 2:
            await trio.sleep(0.001)
        args = parse("--url", sink.url, "--json", "--count", "2", "--symbol", "ETHUSDT",
                     "--type", "klines")
        result: list[tuple[int, str, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: _collect(result, args))
            await sink.wait_for_clients(1)
            (client,) = sink.clients
            while client.subscription is None:  # the subscribe snapshot is queued by now
                await trio.sleep(0.001)
            await inbox.put([kline("ETHUSDT", 2.0)])
        status, out, err = result[0]
        assert status == 0, err
        closes = [item["close"] for line in out.splitlines()
                  for item in msgspec.json.decode(line)["data"]]
        assert closes == [1.0, 2.0]


def test_latest_printed_drops_only_a_repeated_state() -> None:
    latest = tail.LatestPrinted()
    env = {"channel": "linear", "data_type": "klines",
           "data": [{"symbol": "A", "interval": 60_000, "close": 1},
                    {"symbol": "A", "interval": 300_000, "close": 1}]}
    assert latest.new_items(env) is env
    changed = {**env, "data": [env["data"][0], {**env["data"][1], "close": 2}]}
    assert latest.new_items(changed) == {**env, "data": [changed["data"][1]]}
    assert latest.new_items(changed) is None
    assert latest.new_items(env) == {**env, "data": [env["data"][1]]}  # back to close 1
    trades = {"channel": "linear", "data_type": "trades", "data": [{"s": "A", "i": "1"}]}
    assert latest.new_items(trades) is trades and latest.new_items(trades) is trades


def test_pretty_lines_show_times_interval_labels_and_partial() -> None:
    env = {"channel": "linear", "data_type": "klines", "data": [
        {"symbol": "BTCUSDT", "interval": 500, "timestamp": 1_764_143_940_500, "open": 1.0,
         "high": 1.0, "low": 1.0, "close": 1.0, "volume": 2.5, "trade_count": 1,
         "closed": False, "partial": True}]}
    assert tail.pretty_lines(env) == [
        "linear klines  BTCUSDT        500ms 2025-11-26T07:59:00.500Z open   "
        "O 1 H 1 L 1 C 1 V 2.5 n 1 partial"]
