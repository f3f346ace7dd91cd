"""History is routed by the core from a transform's inputs to the source that produced the
stream: with only the source's ``rest_url`` set, every request of every plugin goes there.

Where the process connects is recorded with a ``sys.addaudithook`` hook on Python's own
``socket.connect`` and ``socket.getaddrinfo`` audit events: every outgoing connection of the
process is seen, whichever plugin makes it, with nothing of ours replaced."""

from __future__ import annotations

import sys
import threading
from typing import Any

import trio

from streamer import clock
from streamer._config import ConfigError, load_config_text
from streamer.testing import running_pipeline

_lock = threading.Lock()
_recording: list[list[tuple[str, Any]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _recording or event not in ("socket.connect", "socket.getaddrinfo"):
        return
    target = args[1] if event == "socket.connect" else (args[0], args[1])
    with _lock:
        for sink in _recording:
            sink.append((event, target))


sys.addaudithook(_audit)

PIPE = """
[[sources]]
name = "bybit"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
url = "{ws}"
rest_url = "{rest}"

[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["10s", "1m", "5m", "1h"]
first_candle = "backfill"

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["klines"]
"""


async def test_every_request_goes_to_the_sources_rest_url(fake_bybit, plugin_manager):
    fake = fake_bybit
    seen: list[tuple[str, Any]] = []
    _recording.append(seen)
    try:
        with trio.fail_after(30):
            async with running_pipeline(PIPE.format(ws=fake.ws_url("linear"),
                                                    rest=fake.rest_url),
                                        plugin_manager) as pipeline:
                await fake.wait_subscribed("linear", ["publicTrade.BTCUSDT",
                                                      "publicTrade.ETHUSDT"])
                now = clock.now_ms()
                for symbol in ("BTCUSDT", "ETHUSDT"):
                    # (off a 10s boundary, so that every first candle opened before it)
                    fake.trade("linear", symbol, ts=now if now % 10_000 else now - 1,
                               price="2", size="1")
                klines = pipeline.node("klines")
                metrics = pipeline.nodes["klines"].context.metrics
                while (len(klines.aggregator.open_klines()) < 8
                       or klines.aggregator.pending_backfills()):
                    await trio.sleep(0.01)
    finally:
        _recording.remove(seen)
    assert metrics["backfill_failed"] == 0
    assert metrics["backfilled_klines"] == 8  # 2 symbols x 4 intervals, none partial
    paths = {path for path, _ in fake.rest_requests}
    assert {"/v5/market/kline", "/v5/market/recent-trade"} <= paths
    connects = [target for event, target in seen if event == "socket.connect"]
    lookups = {target[0] for event, target in seen if event == "socket.getaddrinfo"}
    assert connects, "the recording saw no connection at all"
    assert {tuple(c[:2]) for c in connects} == {("127.0.0.1", fake.port)}
    assert lookups <= {"127.0.0.1", b"127.0.0.1"}
    # the 10s first candles came from recent trades, the minute ones from 1m candles
    assert sorted((q["symbol"], q["interval"]) for p, q in fake.rest_requests
                  if p == "/v5/market/kline") == [("BTCUSDT", "1"), ("ETHUSDT", "1")]


def test_the_aggregator_rest_url_is_a_config_error_that_says_where_it_went(plugin_manager):
    toml = PIPE.format(ws="ws://127.0.0.1:1", rest="http://127.0.0.1:1").replace(
        'first_candle = "backfill"', 'rest_url = "https://api-testnet.bybit.com"')
    try:
        load_config_text(toml, plugin_manager, filename="s.toml", environ={})
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("rest_url on klines.from_trades was accepted")
    assert message.startswith("s.toml: transforms[0]: rest_url is no longer an option of "
                              "klines.from_trades")
    assert "on the bybit.linear / bybit.spot source instead" in message


def test_the_runtime_hands_each_transform_the_history_of_its_input_sources(plugin_manager):
    from streamer._runtime import Pipeline

    toml = PIPE.format(ws="ws://127.0.0.1:1", rest="http://127.0.0.1:1") + """
[[sources]]
name = "scripted"
type = "testing.scripted"

[[transforms]]
name = "chained"
type = "klines.passthrough"
inputs = ["klines"]

[[transforms]]
name = "alone"
type = "klines.from_trades"
inputs = ["scripted"]
"""
    config = load_config_text(toml, plugin_manager, filename="s.toml", environ={})
    pipeline = Pipeline(config, plugin_manager)
    source = pipeline.node("bybit")
    klines = pipeline.nodes["klines"].context.history
    assert klines.sources == ["bybit"] and klines.for_channel("linear") is source.history
    assert klines.for_channel("spot") is None
    assert pipeline.nodes["chained"].context.history.sources == ["bybit"]  # through klines
    assert pipeline.nodes["alone"].context.history.sources == []  # scripted has none
