"""The console sink: pure wire-format JSON lines on stdout, or a compact human table."""

from __future__ import annotations

import json

import trio

from streamer import Book, Kline, Price, Ticker, Trade
from streamer.testing import running_pipeline

EVENTS = [
    Kline("linear", "BTCUSDT", 60_000, 1_764_143_940_000, 1.0, 2.0, 0.5, 1.5, 10.0, 3),
    Kline("linear", "BTCUSDT", 500, 1_764_143_940_500, 1.0, 1.0, 1.0, 1.0, 2.5, 1, False,
          partial=True),
    Trade("spot", "ETHUSDT", 1_764_143_940_001, "Sell", "2000.10", "0.5", "224"),
    Price("linear", "BTCUSDT", 91234.5, 1_764_143_940_002),
    Ticker("linear", "BTCUSDT", 1_764_143_940_003, {"symbol": "BTCUSDT", "lastPrice": 91234.5,
                                                    "markPrice": 91230.0}),
    Book("linear", "BTCUSDT", "delta", [["91234.50", "0.010"]], [], 42, 1_764_143_940_004, 9,
         1_764_143_940_002),
    Book("spot", "ETHUSDT", "snapshot", [], [], 1, 1_764_143_940_005),
]


async def run_console(plugin_manager, fmt: str) -> None:  # type: ignore[no-untyped-def]
    toml = f'[[sources]]\nname = "src"\ntype = "testing.scripted"\n' \
           f'[[sinks]]\ntype = "console"\nformat = "{fmt}"\n'
    with trio.fail_after(10):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            pipeline.node("src").push(EVENTS)
            pipeline.node("src").finish()


async def test_json_lines_are_wire_envelopes(plugin_manager, capfd) -> None:
    await run_console(plugin_manager, "json")
    out, _ = capfd.readouterr()
    envelopes = [json.loads(line) for line in out.splitlines()]
    assert [(e["channel"], e["data_type"]) for e in envelopes] == [
        ("linear", "klines"), ("spot", "trades"), ("linear", "price"), ("linear", "ticker"),
        ("linear", "book"), ("spot", "book")]
    assert envelopes[4]["data"] == [{"symbol": "BTCUSDT", "kind": "delta",
                                     "bids": [["91234.50", "0.010"]], "asks": [],
                                     "update_id": 42, "ts": 1_764_143_940_004, "seq": 9,
                                     "engine_ts": 1_764_143_940_002}]
    assert envelopes[5]["data"] == [{"symbol": "ETHUSDT", "kind": "snapshot", "bids": [],
                                     "asks": [], "update_id": 1, "ts": 1_764_143_940_005}]
    assert envelopes[0]["data"][0]["trade_count"] == 3
    assert envelopes[0]["data"][1]["partial"] is True


async def test_pretty_table(plugin_manager, capfd) -> None:
    await run_console(plugin_manager, "pretty")
    out, _ = capfd.readouterr()
    assert out.splitlines() == [
        "linear klines  BTCUSDT           1m 2025-11-26T07:59:00.000Z closed "
        "O 1 H 2 L 0.5 C 1.5 V 10 n 3",
        "linear klines  BTCUSDT        500ms 2025-11-26T07:59:00.500Z open   "
        "O 1 H 1 L 1 C 1 V 2.5 n 1 partial",
        "spot   trades  ETHUSDT        2025-11-26T07:59:00.001Z Sell 0.5 @ 2000.10",
        "linear price   BTCUSDT        2025-11-26T07:59:00.002Z 91234.5",
        "linear ticker  BTCUSDT        last 91234.5 mark 91230.0",
        "linear book    BTCUSDT        2025-11-26T07:59:00.004Z delta    u 42 "
        "bid 0.010 @ 91234.50 ask - (1b/0a)",
        "spot   book    ETHUSDT        2025-11-26T07:59:00.005Z snapshot u 1 bid - ask - (0b/0a)",
    ]


def test_every_bad_option_is_reported_with_its_path(plugin_manager) -> None:
    import pytest

    from streamer._config import ConfigError, load_config_text

    toml = '[[sources]]\nname = "src"\ntype = "testing.scripted"\n' \
           '[[sinks]]\ntype = "console"\nformat = "xml"\nstream = "stdin"\n'
    with pytest.raises(ConfigError) as info:
        load_config_text(toml, plugin_manager, filename="s.toml", environ={})
    assert [e.partition(":")[2].partition(":")[0] for e in info.value.errors] == [
        " sinks[0].format", " sinks[0].stream"], info.value.errors
