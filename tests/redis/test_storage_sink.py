"""The ``storage`` sink against a real redis-server: every key, its type and TTL, history,
startup cleaning, flush triggers and faults."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from redis_server import RedisServer
from sink_helpers import T0, kline, make_context, price, running, ticker, trade, wait_until

from streamer import Book
from streamer.testing import config_errors
from streamer_redis.storage import StorageConfig, StorageSink, format_price

MINUTE = 60_000
HOUR = 3_600_000


def storage_for(server: RedisServer, **options: Any) -> StorageSink:
    options.setdefault("port", server.port)
    return StorageSink(StorageConfig(**options), make_context("storage"))


def decode(raw: bytes) -> Any:
    return msgspec.json.decode(raw)


async def test_every_key_with_its_type_ttl_and_content(redis_server, redis_client):
    sink = storage_for(redis_server)
    batch = [
        ticker("BTCUSDT", markPrice=65000.1, lastPrice=65001.0, volume24h=12.5),
        ticker("ETHUSDT", markPrice=3000.25, lastPrice=3000.5),
        ticker("BTCUSDT", ts=T0 + 1, markPrice=65000.2, lastPrice=65002.0),  # wins
        ticker("BTCUSDT", "spot", lastPrice=0.00001234),
        kline("BTCUSDT", T0),
        kline("ETHUSDT", T0, close=7.25),
        kline("BTCUSDT", T0 + MINUTE, closed=False),  # open: never stored
        kline("BTCUSDT", T0 - HOUR + MINUTE, interval=HOUR, close=9.0),
        trade(1),  # trades are not stored
    ]
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put(batch)

    tickers = redis_client.hgetall("bybit-streamer:tickers:linear")
    assert redis_client.type("bybit-streamer:tickers:linear") == b"hash"
    assert redis_client.ttl("bybit-streamer:tickers:linear") == -1
    assert decode(tickers[b"BTCUSDT"]) == batch[2].to_wire()
    assert decode(tickers[b"ETHUSDT"]) == batch[1].to_wire()
    assert decode(redis_client.hget("bybit-streamer:tickers:spot", "BTCUSDT")) == batch[3].to_wire()

    assert redis_client.type("bybit-streamer:price:linear") == b"hash"
    assert redis_client.ttl("bybit-streamer:price:linear") == -1
    assert redis_client.hgetall("bybit-streamer:price:linear") == {
        b"BTCUSDT": b"65000.2", b"ETHUSDT": b"3000.25"  # linear: markPrice
    }
    assert redis_client.hgetall("bybit-streamer:price:spot") == {
        b"BTCUSDT": b"0.00001234"  # spot: lastPrice, no exponent
    }

    key_1m = "bybit-streamer:last-closed:linear:1m"
    assert redis_client.type(key_1m) == b"string"
    assert 55_000 < redis_client.pttl(key_1m) <= MINUTE
    assert decode(redis_client.get(key_1m)) == [batch[4].to_wire(), batch[5].to_wire()]
    key_1h = "bybit-streamer:last-closed:linear:1h"
    assert HOUR - 5_000 < redis_client.pttl(key_1h) <= HOUR
    assert decode(redis_client.get(key_1h)) == [batch[7].to_wire()]

    assert sorted(redis_client.keys("*")) == sorted([
        b"bybit-streamer:tickers:linear", b"bybit-streamer:tickers:spot",
        b"bybit-streamer:price:linear", b"bybit-streamer:price:spot",
        key_1m.encode(), key_1h.encode(),
    ])  # no history keys with history = 0
    assert sink.context.metrics["written_events"] == len(batch)


async def test_last_closed_holds_the_latest_kline_of_every_symbol(redis_server, redis_client):
    sink = storage_for(redis_server, flush_size=1)
    key = "bybit-streamer:last-closed:spot:1m"
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([kline("BTCUSDT", T0, channel="spot"),
                             kline("ETHUSDT", T0, channel="spot")])
            await wait_until(lambda: sink.context.metrics["flushes"] == 1)
            await inbox.put([kline("BTCUSDT", T0 + MINUTE, close=3.0, channel="spot")])
            await wait_until(lambda: sink.context.metrics["flushes"] == 2)
            # A late, older kline does not replace a newer one.
            await inbox.put([kline("BTCUSDT", T0, close=99.0, channel="spot")])
    stored = decode(redis_client.get(key))
    assert [(k["symbol"], k["timestamp"], k["close"]) for k in stored] == [
        ("BTCUSDT", T0 + MINUTE, 3.0), ("ETHUSDT", T0, 1.5)
    ]


async def test_history_is_trimmed_to_the_last_n(redis_server, redis_client):
    sink = storage_for(redis_server, history=3, flush_size=2)
    with trio.fail_after(10):
        async with running(sink) as inbox:
            for i in range(7):
                await inbox.put([kline("BTCUSDT", T0 + i * MINUTE, close=float(i))])
            await inbox.put([kline("ETHUSDT", T0, interval=HOUR)])
    key = "bybit-streamer:history:linear:1m:BTCUSDT"
    assert redis_client.type(key) == b"list"
    assert redis_client.ttl(key) == -1
    assert [decode(x)["close"] for x in redis_client.lrange(key, 0, -1)] == [4.0, 5.0, 6.0]
    assert redis_client.llen("bybit-streamer:history:linear:1h:ETHUSDT") == 1


async def test_price_from_price_events(redis_server, redis_client):
    sink = storage_for(redis_server, price_from="price")
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([ticker("BTCUSDT", markPrice=1.0), price("BTCUSDT", 65000.0),
                             price("BTCUSDT", 65000.5), price("SOLUSDT", 150.0, "spot")])
    assert redis_client.hgetall("bybit-streamer:price:linear") == {b"BTCUSDT": b"65000.5"}
    assert redis_client.hgetall("bybit-streamer:price:spot") == {b"SOLUSDT": b"150.0"}


async def test_other_channels_and_intervals_are_ignored_and_counted(redis_server, redis_client):
    sink = storage_for(redis_server, channels=["linear"], intervals=["1m", "1h"])
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([ticker("BTCUSDT", "spot", lastPrice=1.0),
                             kline("BTCUSDT", T0, interval=5 * MINUTE),
                             kline("BTCUSDT", T0, interval=HOUR)])
    assert sink.context.metrics["ignored_events"] == 2
    assert redis_client.keys("*") == [b"bybit-streamer:last-closed:linear:1h"]


OURS = {
    "bybit-streamer:tickers:linear": "hash",
    "bybit-streamer:tickers:spot": "hash",
    "bybit-streamer:price:linear": "hash",
    "bybit-streamer:price:spot": "hash",
    "bybit-streamer:book:linear": "hash",
    "bybit-streamer:book:spot": "hash",
    "bybit-streamer:last-closed:linear:1m": "string",
    "bybit-streamer:last-closed:spot:1h": "string",
    "bybit-streamer:history:linear:1m:BTCUSDT": "list",
    "bybit-streamer:history:spot:1h:ETHUSDT": "list",
}
FOREIGN = {
    "bybit-streamer-other:x": "string",
    "bybit-streamerX": "string",
    "bybit-streamer": "string",
    "bybit-streamer:config": "string",
    "bybit-streamer:tickers:linear:extra": "string",
    "bybit-streamer:last-closed:linear:7m": "string",  # interval not configured
    "bybit-streamer:history:linear:7m:BTCUSDT": "list",
    "bybit-streamer:history-archive:linear:1m:BTCUSDT": "list",
    "other-app:bybit-streamer:history:linear:1m:BTCUSDT": "list",
}


def populate(client: Any, keys: dict[str, str]) -> None:
    for key, kind in keys.items():
        if kind == "hash":
            client.hset(key, "BTCUSDT", "1")
        elif kind == "list":
            client.rpush(key, "1")
        else:
            client.set(key, "1")


async def test_startup_clean_deletes_only_documented_keys(redis_server, redis_client):
    populate(redis_client, OURS | FOREIGN)
    for i in range(1200):  # enough history keys to need several SCAN rounds and DEL batches
        redis_client.rpush(f"bybit-streamer:history:linear:1m:S{i}", "1")
    sink = storage_for(redis_server, intervals=["1m", "1h"])
    with trio.fail_after(10):
        async with running(sink):
            remaining = {k.decode() for k in redis_client.keys("*")}
    assert remaining == set(FOREIGN)
    assert sink.cleaned_keys == len(OURS) + 1200


async def test_startup_clean_escapes_glob_characters_in_main_key(redis_server, redis_client):
    populate(redis_client, {"bs[1]:history:linear:1m:BTCUSDT": "list",
                            "bs1:history:linear:1m:BTCUSDT": "list",
                            "bs?:history:linear:1m:BTCUSDT": "list"})
    sink = storage_for(redis_server, main_key="bs[1]", intervals=["1m"])
    with trio.fail_after(10):
        async with running(sink):
            pass
    assert sorted(redis_client.keys("*")) == [b"bs1:history:linear:1m:BTCUSDT",
                                              b"bs?:history:linear:1m:BTCUSDT"]


async def test_clean_on_start_false_keeps_everything(redis_server, redis_client):
    populate(redis_client, OURS)
    sink = storage_for(redis_server, clean_on_start=False, intervals=["1m", "1h"])
    with trio.fail_after(10):
        async with running(sink):
            pass
    assert len(redis_client.keys("*")) == len(OURS)


async def test_flush_by_size(redis_server, redis_client, mock_clock):
    sink = storage_for(redis_server, flush_size=10, flush_interval=3600.0)
    with trio.fail_after(7200):
        async with running(sink) as inbox:
            start = trio.current_time()
            await inbox.put([ticker(f"S{i}", markPrice=float(i)) for i in range(9)])
            await trio.sleep(60)
            assert sink.context.metrics["flushes"] == 0
            assert redis_client.exists("bybit-streamer:price:linear") == 0
            await inbox.put([ticker("S9", markPrice=9.0)])
            await wait_until(lambda: sink.context.metrics["flushes"] == 1)
            assert trio.current_time() - start < 120  # well before the interval
            assert redis_client.hlen("bybit-streamer:price:linear") == 10


async def test_flush_by_interval(redis_server, redis_client, mock_clock):
    sink = storage_for(redis_server, flush_size=100, flush_interval=1.0)
    with trio.fail_after(600):
        async with running(sink) as inbox:
            start = trio.current_time()
            await inbox.put([ticker("BTCUSDT", markPrice=1.0)])
            await trio.sleep(0.5)
            await inbox.put([ticker("BTCUSDT", markPrice=2.0)])  # coalesced with the first
            await trio.sleep(0.4)
            assert redis_client.exists("bybit-streamer:price:linear") == 0
            await wait_until(lambda: sink.context.metrics["flushes"] == 1, step=0.25)
            assert sink.writer.last_write_started == pytest.approx(start + 1.0)
            assert redis_client.hgetall("bybit-streamer:price:linear") == {b"BTCUSDT": b"2.0"}
            # The window restarts with the next event.
            await trio.sleep(10)
            await inbox.put([ticker("BTCUSDT", markPrice=3.0)])
            second = trio.current_time()
            await wait_until(lambda: sink.context.metrics["flushes"] == 2, step=0.25)
            assert sink.writer.last_write_started == pytest.approx(second + 1.0)


async def test_flush_with_a_batch_when_the_next_would_come_after_the_window(
    redis_server, redis_client, mock_clock
):
    # Batches 0.6 s apart, a 1 s window: the second batch writes at once (its successor would
    # come after the window closed), so the window's timer never fires for nothing new.
    sink = storage_for(redis_server, flush_size=100, flush_interval=1.0)
    with trio.fail_after(600):
        async with running(sink) as inbox:
            start = trio.current_time()
            await inbox.put([ticker("BTCUSDT", markPrice=1.0)])
            await trio.sleep(0.6)
            await inbox.put([ticker("BTCUSDT", markPrice=2.0)])
            await wait_until(lambda: sink.context.metrics["flushes"] == 1, step=0.05)
            assert sink.writer.last_write_started == pytest.approx(start + 0.6)
            assert redis_client.hgetall("bybit-streamer:price:linear") == {b"BTCUSDT": b"2.0"}


async def test_shutdown_flushes_what_is_buffered(redis_server, redis_client):
    sink = storage_for(redis_server, flush_size=100_000, flush_interval=3600.0, history=10)
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([kline("BTCUSDT", T0), ticker("BTCUSDT", markPrice=5.5)])
            await trio.sleep(0)
            assert sink.context.metrics["flushes"] == 0
        # running() closed the inbox: get() returned [] and the sink flushed and returned.
    assert redis_client.hget("bybit-streamer:price:linear", "BTCUSDT") == b"5.5"
    assert redis_client.llen("bybit-streamer:history:linear:1m:BTCUSDT") == 1


async def test_redis_restart_mid_stream_storage_catches_up(redis_server, redis_client,
                                                           mock_clock):
    sink = storage_for(redis_server, flush_size=1, reconnect_initial=0.05, reconnect_max=0.5)
    metrics = sink.context.metrics
    with trio.fail_after(120):
        async with running(sink) as inbox:
            await inbox.put([ticker("BTCUSDT", markPrice=1.0)])
            await wait_until(lambda: metrics["written_events"] == 1)
            redis_server.kill()
            await inbox.put([ticker("ETHUSDT", markPrice=2.0), kline("ETHUSDT", T0)])
            await wait_until(lambda: metrics["write_failures"] >= 2)
            redis_server.restart()
            await wait_until(lambda: metrics["written_events"] == 3)
    client = redis_server.client()
    assert client.hgetall("bybit-streamer:price:linear") == {b"ETHUSDT": b"2.0"}
    assert decode(client.get("bybit-streamer:last-closed:linear:1m"))[0]["symbol"] == "ETHUSDT"


def test_intervals_are_the_core_labels():
    assert StorageConfig(intervals=["1m", "1h", "1D", "1M"],
                         key_labels="config").interval_labels() == {
        60_000: "1m", 3_600_000: "1h", 86_400_000: "1D", 2_592_000_000: "1M"}
    # By default the keys carry the older streamer's lower-case labels; the month stays 1M.
    assert StorageConfig(intervals=["1m", "1h", "1D", "1W", "1M"]).interval_labels() == {
        60_000: "1m", 3_600_000: "1h", 86_400_000: "1d", 604_800_000: "1w",
        2_592_000_000: "1M"}
    assert "1M" not in StorageConfig().intervals  # months only when asked for
    for bad in ("60m", "0m", "1x", "1.5h"):
        with pytest.raises(ValueError, match=r"unknown kline interval .* valid intervals: 1m"):
            StorageConfig(intervals=[bad])


def test_price_format():
    assert format_price(65000.1) == "65000.1"
    assert format_price("65000.10") == "65000.1"
    assert format_price(0.1 + 0.2) == "0.30000000000000004"  # exact round trip, no loss
    assert format_price(3) == "3.0"
    assert format_price(1.234e-05) == "0.00001234"
    assert format_price(1e21) == "1000000000000000000000"
    for bad in (None, "", "abc", True, float("nan")):
        assert format_price(bad) is None


def test_config_errors():
    with pytest.raises(ValueError, match="history: expected at least 0, got -1"):
        StorageConfig(history=-1)
    with pytest.raises(ValueError, match="channels must list"):
        StorageConfig(channels=[])
    with pytest.raises(ValueError, match="max_buffer: expected at least 1, got 0"):
        StorageConfig(max_buffer=0)


async def test_an_unencodable_event_is_dropped_and_counted_not_fatal(redis_server, redis_client):
    sink = storage_for(redis_server, flush_size=1, flush_interval=0.0)
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([ticker("BADUSDT", markPrice=1.0, weird=object())])
            await wait_until(lambda: sink.context.metrics["unwritable_events"] == 1)
            await inbox.put([ticker("BTCUSDT", markPrice=2.0)])
    assert sink.context.metrics["unwritable_events"] == 1
    assert redis_client.hgetall("bybit-streamer:price:linear") == {b"BTCUSDT": b"2.0"}


def test_config_through_the_core_loader(plugin_manager):
    from streamer._config import ConfigError, load_config_text

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
name = "storage"
type = "storage"
inputs = ["src"]
password = "hunter2"
intervals = ["1m", "60m"]
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(toml, plugin_manager, filename="s.toml", environ={})
    text = str(info.value)
    assert "sinks[0].password: secrets are not read from the file" in text
    assert "s.toml: sinks[0].intervals: unknown kline interval '60m'; valid intervals: 1m" in text
    config = load_config_text(toml.replace('password = "hunter2"\n', "").replace(', "60m"', ""),
                              plugin_manager, filename="s.toml", environ={})
    assert config is not None


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators, connection options included: every error shows at once."""

    toml = """
[[sources]]
name = "src"
type = "testing.scripted"

[[sinks]]
type = "storage"
port = 0
history = -1
flush_size = 0
flush_interval = -1
"""
    assert config_errors(toml, plugin_manager) == [
        "s.toml: sinks[0].port: expected 1 to 65535, got 0",
        "s.toml: sinks[0].history: expected at least 0, got -1",
        "s.toml: sinks[0].flush_size: expected at least 1, got 0",
        "s.toml: sinks[0].flush_interval: expected at least 0, got -1.0",
    ]


async def test_any_channel_name_with_its_own_price_field(redis_server, redis_client):
    """Channels are the sources' own names; each takes its price from the ticker field that
    price_fields names, over the Bybit defaults (linear: markPrice), which the older
    linear_price_field / spot_price_field still set."""
    sink = storage_for(redis_server, channels=["linear", "futures"], intervals=["1m"],
                       price_fields={"futures": "index"})
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put([ticker("ABC-PERP", "futures", index=101.5, lastPrice=1.0),
                             ticker("BTCUSDT", markPrice=65000.0, lastPrice=1.0),
                             kline("ABC-PERP", T0, channel="futures", close=7.5)])
    assert redis_client.hgetall("bybit-streamer:price:futures") == {b"ABC-PERP": b"101.5"}
    assert redis_client.hgetall("bybit-streamer:price:linear") == {b"BTCUSDT": b"65000.0"}
    assert [k["close"] for k in decode(
        redis_client.get("bybit-streamer:last-closed:futures:1m"))] == [7.5]
    assert StorageConfig(linear_price_field="lastPrice").price_field_of() == {
        "linear": "lastPrice", "spot": "lastPrice", "inverse": "markPrice", "option": "markPrice"}
    assert StorageConfig(price_fields={"spot": "markPrice"}).price_field_of() == {
        "linear": "markPrice", "spot": "markPrice", "inverse": "markPrice", "option": "markPrice"}
    # bybit.inverse and bybit.option channels store without price_fields
    assert StorageConfig(channels=["inverse", "option"]).channels == ["inverse", "option"]


@pytest.mark.parametrize(("options", "error"), [
    ({"channels": ["futures"]},
     "price_fields names no ticker field for channel 'futures': add price_fields.futures"),
    ({"channels": ["a:b"]}, "channels: bad channel name 'a:b'"),
    ({"channels": ["linear*"]}, "channels: bad channel name 'linear\\*'"),
    ({"price_fields": {"x.y": "last"}}, "price_fields: bad channel name 'x.y'"),
    ({"linear_price_field": "lastPrice", "price_fields": {"linear": "markPrice"}},
     "linear_price_field \\('lastPrice'\\) and price_fields.linear \\('markPrice'\\) disagree"),
])
def test_channel_and_price_field_errors(options, error):
    with pytest.raises(ValueError, match=error):
        StorageConfig(**options)


def test_a_channel_without_price_field_is_fine_when_prices_come_from_price_events():
    assert StorageConfig(channels=["futures"], price_from="price").channels == ["futures"]


async def test_books_keep_their_top_levels_and_a_broken_one_is_deleted(redis_server,
                                                                       redis_client):
    sink = storage_for(redis_server, book_depth=2, flush_size=1000)
    key = "bybit-streamer:book:linear"
    first = [
        Book("linear", "BTCUSDT", "snapshot", [["100", "1"], ["99", "2"], ["98", "3"]],
             [["101", "1"], ["102", "2"], ["103", "3"]], 7, T0, 70, T0 - 1),
        Book("linear", "BTCUSDT", "delta", [["100", "0"], ["99.5", "4"]], [], 8, T0 + 1, 71),
        Book("linear", "ETHUSDT", "delta", [["1", "1"]], [], 3, T0),  # no snapshot: waits
        Book("linear", "SOLUSDT", "snapshot", [], [], 1, T0),  # a delisting: empty sides
    ]
    with trio.fail_after(10):
        async with running(sink) as inbox:
            await inbox.put(first)
            await wait_until(lambda: sink.context.metrics["written_events"] == 4)
            assert {k: decode(v) for k, v in redis_client.hgetall(key).items()} == {
                b"BTCUSDT": {"symbol": "BTCUSDT", "bids": [["99.5", "4"], ["99", "2"]],
                             "asks": [["101", "1"], ["102", "2"]], "update_id": 8,
                             "ts": T0 + 1, "seq": 71},
                b"SOLUSDT": {"symbol": "SOLUSDT", "bids": [], "asks": [], "update_id": 1,
                             "ts": T0},
            }
            # u 9 is missing: the stored BTCUSDT book would be wrong, so it goes.
            await inbox.put([Book("linear", "BTCUSDT", "delta", [["97", "1"]], [], 10, T0 + 2)])
            await wait_until(lambda: sink.context.metrics["written_events"] == 5)
            assert set(redis_client.hgetall(key)) == {b"SOLUSDT"}
            assert sink.context.metrics["book_gaps"] == 1
            await inbox.put([Book("linear", "BTCUSDT", "delta", [["97", "1"]], [], 11, T0 + 3),
                             Book("linear", "BTCUSDT", "snapshot", [["90", "1"]], [["91", "1"]],
                                  20, T0 + 4)])
    assert decode(redis_client.hget(key, "BTCUSDT")) == {
        "symbol": "BTCUSDT", "bids": [["90", "1"]], "asks": [["91", "1"]], "update_id": 20,
        "ts": T0 + 4}
