"""Behaviour 9 (endpoints, testnet) and the configuration as the core structures it."""

from __future__ import annotations

import pytest
import trio
from bybit.harness import make_source

from streamer._config import ConfigError, load_config_text
from streamer._events import Trade
from streamer._plugins import load_plugin_manager
from streamer.testing import TestingPlugin, config_errors, running_pipeline
from streamer_bybit.book_depths import DEPTHS, depth_problem
from streamer_bybit.source import (
    BybitLinearConfig,
    BybitSource,
    BybitSpotConfig,
    build_topics,
)


def endpoints(config, category="linear"):
    import logging

    from streamer._api import Context
    from streamer._metrics import Metrics

    ctx = Context(
        name="b", type=f"bybit.{category}", logger=logging.getLogger("t"), metrics=Metrics()
    )
    source = BybitSource(config, ctx, category)
    return source.url, source.rest_url


def test_default_endpoints_are_mainnet():
    assert endpoints(BybitLinearConfig(symbols=["BTCUSDT"])) == (
        "wss://stream.bybit.com/v5/public/linear",
        "https://api.bybit.com",
    )
    assert endpoints(BybitSpotConfig(symbols=["BTCUSDT"]), "spot") == (
        "wss://stream.bybit.com/v5/public/spot",
        "https://api.bybit.com",
    )


def test_testnet_shortcut_and_explicit_urls_win():
    assert endpoints(BybitSpotConfig(symbols=["X"], testnet=True), "spot") == (
        "wss://stream-testnet.bybit.com/v5/public/spot",
        "https://api-testnet.bybit.com",
    )
    config = BybitLinearConfig(symbols=["X"], testnet=True, url="ws://h:1/p", rest_url="http://h:2")
    assert endpoints(config) == ("ws://h:1/p", "http://h:2")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "no symbols"),
        ({"symbols": ["A"], "load_all_symbols": True}, "either symbols or load_all"),
        ({"symbols": ["A"], "streams": []}, "streams is empty"),
        ({"symbols": ["A"], "streams": ["klines"], "kline_intervals": []}, "kline_intervals"),
        ({"symbols": ["A"], "stale_timeout": 20}, "must be longer than ping_interval"),
        ({"symbols": ["A"], "url": "https://x/y"}, "url must be a ws or wss URL"),
        ({"symbols": ["A"], "rest_url": "ftp://x"}, "rest_url must be a http or https URL"),
        ({"symbols": ["A"], "topics_per_connection": 0}, "topics_per_connection"),
        ({"load_all_symbols": True, "symbols_limit": 0}, "symbols_limit"),
    ],
)
def test_bad_config_gets_a_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        BybitLinearConfig(**options)


def test_topics_for_every_stream_and_interval_code():
    config = BybitLinearConfig(
        symbols=["BTCUSDT"],
        streams=["trades", "klines", "tickers", "price"],
        kline_intervals=[
            "1m",
            "3m",
            "5m",
            "15m",
            "30m",
            "1h",
            "2h",
            "4h",
            "6h",
            "12h",
            "1D",
            "1W",
            "1M",
        ],
    )
    codes = "1 3 5 15 30 60 120 240 360 720 D W M".split()
    assert build_topics(config, config.symbols) == (
        ["publicTrade.BTCUSDT"] + [f"kline.{c}.BTCUSDT" for c in codes] + ["tickers.BTCUSDT"]
    )
    only_price = BybitSpotConfig(symbols=["ETHUSDT"], streams=["price"])
    assert build_topics(only_price, ["ETHUSDT"]) == ["tickers.ETHUSDT"]


def test_core_config_structures_and_rejects_keys():
    pm = load_plugin_manager(environ={})
    toml = """
[[sources]]
name = "linear"
type = "bybit.linear"
symbols = ["BTCUSDT"]
streams = ["trades", "klines"]
kline_intervals = ["1m", "1h"]

[[sinks]]
type = "console"
inputs = ["linear"]
"""
    load_config_text(toml, pm, filename="t.toml", environ={})
    with pytest.raises(ConfigError) as info:
        load_config_text(
            toml.replace('"1h"', '"7m"').replace("streams", "strems"),
            pm,
            filename="t.toml",
            environ={},
        )
    text = str(info.value)
    assert "strems" in text


async def test_pipeline_with_bybit_linear_streams_from_fake(fake_bybit):
    pm = load_plugin_manager(environ={})
    pm.register(TestingPlugin(), "testing")
    toml = f"""
[[sources]]
name = "linear"
type = "bybit.linear"
symbols = ["BTCUSDT", "ETHUSDT"]
url = "{fake_bybit.ws_url("linear")}"
rest_url = "{fake_bybit.rest_url}"

[[sinks]]
name = "out"
type = "testing.collect"
inputs = ["linear"]
"""
    with trio.fail_after(10):
        async with running_pipeline(toml, pm) as pipeline:
            fake_bybit.trade("linear", "BTCUSDT", count=2)
            fake_bybit.trade("linear", "ETHUSDT")
            events = await pipeline.node("out").wait_for(3)
    assert [type(e) for e in events] == [Trade, Trade, Trade]
    assert {e.symbol for e in events} == {"BTCUSDT", "ETHUSDT"}


async def test_wss_and_https_with_a_custom_ca(collector, tmp_path):
    from streamer_bybit.simulator import FakeBybit, make_ssl_contexts

    server_ctx, _client_ctx, ca_file = make_ssl_contexts(str(tmp_path))
    fake = FakeBybit(linear_symbols=["BTCUSDT"], ssl_context=server_ctx)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            assert fake.ws_url("linear").startswith("wss://")
            source = make_source(fake, symbols=["BTCUSDT", "NOPEUSDT"], ca_file=ca_file)
            await nursery.start(source.run, collector)
            assert source.unknown_symbols == ["NOPEUSDT"]  # REST over https worked
            fake.trade("linear", "BTCUSDT", count=3)
            await collector.wait_for(lambda ev: len(ev) == 3)
            nursery.cancel_scope.cancel()


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators, not a chain that stops at the first: all three show at once."""
    toml = """
[[sources]]
type = "bybit.linear"
symbols = ["BTCUSDT"]
topics_per_connection = 0
recovery_max_held = 0
stale_timeout = 10

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: sources[0].topics_per_connection: expected at least 1, got 0",
        "s.toml: sources[0].stale_timeout: stale_timeout (10) must be longer than "
        "ping_interval (20)",
        "s.toml: sources[0].recovery_max_held: expected at least 1, got 0",
    ]


def test_every_bad_capture_option_is_reported_with_its_path(plugin_manager):
    """The capture options are field validators too: all four show at once."""
    toml = """
[[sources]]
type = "bybit.spot"
symbols = ["BTCUSDT"]
capture_dir = "captures"
capture_file_mb = 0
capture_rotate_s = -1
capture_queue_mb = 5000
capture_level = 20

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: sources[0].capture_file_mb: expected more than 0, got 0.0",
        "s.toml: sources[0].capture_rotate_s: expected more than 0, got -1.0",
        "s.toml: sources[0].capture_queue_mb: expected more than 0 and at most 4096, "
        "got 5000.0",
        "s.toml: sources[0].capture_level: expected 1 to 19, got 20",
    ]


def test_check_refuses_a_capture_dir_that_cannot_take_files(plugin_manager, tmp_path):
    """A capture that could write nothing would lose the whole recording while the source
    streams on: `check` (and so `run`) refuses it. Failure modes that hold for root too."""
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    (tmp_path / "file").write_text("")
    toml = """
[[sources]]
type = "bybit.spot"
symbols = ["BTCUSDT"]
capture_dir = "{where}"

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml.format(where=loop), plugin_manager) == [
        f"s.toml: sources[0]: capture_dir: '{loop}' cannot be resolved: Too many levels of "
        "symbolic links"]
    assert config_errors(toml.format(where=tmp_path / "file" / "c"), plugin_manager) == [
        f"s.toml: sources[0]: capture_dir: '{tmp_path}/file' is not a folder"]
    assert config_errors(toml.format(where="/proc/captures"), plugin_manager) == [
        "s.toml: sources[0]: capture_dir: cannot create a file in '/proc' (to create "
        "'/proc/captures' in it): No such file or directory"]
    # A missing folder under a writable one is made when the capture starts, as before.
    assert config_errors(toml.format(where=tmp_path / "new" / "c"), plugin_manager) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "loop", "loop2"]


@pytest.mark.parametrize("source, depth, message", [
    ("bybit.linear", 25, "linear serves depths 1, 50, 200, 1000, got 25"),
    ("bybit.linear", 500, "linear serves depths 1, 50, 200, 1000, got 500"),
    ("bybit.spot", 100, "spot serves depths 1, 50, 200, 1000, got 100"),
])
def test_book_depth_is_checked_per_category_in_one_line(plugin_manager, source, depth,
                                                        message):
    toml = f"""
[[sources]]
type = "{source}"
symbols = ["BTCUSDT"]
streams = ["orderbook"]
book_depth = {depth}
book_stale_s = 0

[[sinks]]
type = "testing.collect"
"""
    assert config_errors(toml, plugin_manager) == [
        f"s.toml: sources[0].book_depth: {message}",
        "s.toml: sources[0].book_stale_s: must be a positive number of seconds, got 0.0",
    ]


def test_book_topics_go_with_the_symbol_through_the_same_pool():
    config = BybitSpotConfig(symbols=["BTCUSDT", "ETHUSDT"], streams=["trades", "orderbook"],
                             book_depth=200)
    assert build_topics(config, config.symbols) == [
        "publicTrade.BTCUSDT", "orderbook.200.BTCUSDT", "publicTrade.ETHUSDT",
        "orderbook.200.ETHUSDT"]
    assert DEPTHS["option"] == (25, 100) and depth_problem("option", 25) is None
    assert depth_problem("inverse", 50) is None
    assert depth_problem("option", 50) == "book_depth: option serves depths 25, 100, got 50"
