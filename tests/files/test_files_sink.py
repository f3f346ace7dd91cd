"""The files sink: Parquet and JSON lines round-trip, partitions, size/time flush, atomic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import trio
import zstandard

from streamer._events import (
    Book,
    Derivatives,
    Funding,
    Kline,
    Liquidation,
    Price,
    Ticker,
    Trade,
)
from streamer.testing import running_pipeline

DAY = 86_400_000
T0 = 1_764_115_200_000  # 2025-11-26 00:00 UTC


def events(n: int = 40, liquidations: bool = False, *, books: bool = False) -> list:
    out: list = []
    for i in range(n):
        ts = T0 + i * 3_600_000  # hourly: the second day starts at i = 24
        out.append(Trade("linear", "BTCUSDT", ts, "Buy", f"{65000 + i}.5", "0.001",
                         f"id-{i}", "PlusTick", False, False, 100 + i))
        out.append(Trade("spot", "ETHUSDT", ts + 1, "Sell", "3500.25", "1.2", str(i)))
        out.append(Kline("linear", "BTCUSDT", 60_000, ts, 1.0 + i, 2.0 + i, 0.5, 1.5, 10.25,
                         i, True, None, i % 5 == 0))
        out.append(Kline("linear", "ETHUSDT", 60_000, ts, 1.0, 2.0, 0.5, 1.5, 3.0, None,
                         True, 4.5))
        out.append(Price("linear", "BTCUSDT", 65000.5 + i, ts))
        out.append(Ticker("linear", "BTCUSDT", ts, {"symbol": "BTCUSDT", "lastPrice": 65000.0 + i,
                                                    "tickDirection": "PlusTick",
                                                    "fundingRate": "" if i == 3 else 0.0001}))
        if liquidations:
            out.append(Liquidation("inverse", "BTCUSD", ts + 2, "Buy", f"{i + 1}", "94000.5"))
            out.append(Derivatives("inverse", "BTCUSD", ts + 3, 0.0001 * i, ts + 8 * 3_600_000,
                                   None if i == 2 else 10.0 + i, 5.5, 94000.5, 94001.0))
            out.append(Funding("inverse", "BTCUSD", ts, -0.0001 * i))
        if books:
            out.append(Book("linear", "BTCUSDT", "snapshot" if i % 10 == 0 else "delta",
                            [[f"{65000 + i}.5", "0.001"], ["65000.0", "0"]], [] if i == 7
                            else [[f"{65001 + i}.50", "1.250"]], 100 + i, ts + 2,
                            None if i == 5 else 9000 + i, None if i == 6 else ts))
    return out


PIPE = """
[[sources]]
name = "in"
type = "testing.scripted"

[[sinks]]
name = "files"
type = "files"
dir = "{dir}"
format = "{format}"
max_rows = {max_rows}
flush_interval_s = {flush}
"""


async def run_sink(plugin_manager, tmp_path: Path, fmt: str, batches, max_rows=100_000,
                   flush=60.0):
    toml = PIPE.format(dir=tmp_path, format=fmt, max_rows=max_rows, flush=flush)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        source = pipeline.node("in")
        total = 0
        for b in batches:
            source.push(b)
            total += len(b)
        source.finish()
        while source.emitted < total:
            await trio.sleep(0.01)
    return pipeline


def wire(e) -> dict:
    return json.loads(json.dumps(e.to_wire()))


def read_jsonl(root: Path) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for f in sorted(root.rglob("*.jsonl.zst")):
        text = zstandard.ZstdDecompressor().stream_reader(f.read_bytes()).read().decode()
        for line in text.splitlines():
            env = json.loads(line)
            assert len(env["data"]) == 1
            out.setdefault((env["channel"], env["data_type"]), []).extend(env["data"])
    return out


async def test_jsonl_round_trips_partitioned_by_channel_type_and_date(plugin_manager, tmp_path):
    evs = events(liquidations=True, books=True)
    await run_sink(plugin_manager, tmp_path, "jsonl", [evs[:100], evs[100:]])
    got = read_jsonl(tmp_path)
    for (channel, data_type), items in got.items():
        want = [wire(e) for e in evs if e.channel == channel and e.data_type == data_type]
        assert sorted(items, key=json.dumps) == sorted(want, key=json.dumps)
    assert set(got) == {(e.channel, e.data_type) for e in evs}
    dates = {p.name for p in tmp_path.glob("linear/trades/*")}
    assert dates == {"date=2025-11-26", "date=2025-11-27"}
    assert not list(tmp_path.rglob(".*"))  # no temporary file left


def _check_trades(table: pa.Table, want: list[Trade]) -> None:
    assert table.schema.field("T").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("p").type == pa.float64()
    rows = table.to_pylist()
    assert [int(r["T"].timestamp() * 1000) for r in rows] == [t.ts for t in want]
    assert [r["p"] for r in rows] == [float(t.price) for t in want]
    assert [r["v"] for r in rows] == [float(t.size) for t in want]
    assert [(r["s"], r["S"], r["i"], r["L"], r["seq"]) for r in rows] == [
        (t.symbol, t.side, t.trade_id, t.tick_direction, t.seq) for t in want]


async def test_parquet_reads_back_with_pyarrow_typed_and_equal(plugin_manager, tmp_path):
    evs = events(liquidations=True, books=True)
    await run_sink(plugin_manager, tmp_path, "parquet", [evs[i:i + 7]
                                                         for i in range(0, len(evs), 7)])
    trades = pq.read_table(tmp_path / "linear" / "trades").sort_by("T")
    _check_trades(trades.drop_columns(["date"]),
                  [e for e in evs if isinstance(e, Trade) and e.channel == "linear"])
    klines = pq.read_table(tmp_path / "linear" / "klines").drop_columns(["date"])
    assert klines.schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert klines.schema.field("trade_count").type == pa.int64()
    got = sorted((r["symbol"], int(r["timestamp"].timestamp() * 1000), r["open"], r["close"],
                  r["volume"], r["trade_count"], r["turnover"], r["partial"])
                 for r in klines.to_pylist())
    want = sorted((k.symbol, k.timestamp, k.open, k.close, k.volume, k.trade_count, k.turnover,
                   k.partial) for k in evs if isinstance(k, Kline))
    assert got == want
    tickers = pq.read_table(tmp_path / "linear" / "ticker").drop_columns(["date"])
    assert tickers.schema.field("lastPrice").type == pa.float64()
    assert tickers.schema.field("tickDirection").type == pa.string()
    funding = sorted(tickers.to_pylist(), key=lambda r: r["ts"])
    assert funding[3]["fundingRate"] is None and funding[4]["fundingRate"] == 0.0001
    price = pq.read_table(tmp_path / "linear" / "price")
    assert price.num_rows == 40 and price.schema.field("price").type == pa.float64()
    liquidations = pq.read_table(tmp_path / "inverse" / "liquidations").sort_by("T")
    assert liquidations.schema.field("T").type == pa.timestamp("ms", tz="UTC")
    assert [(int(r["T"].timestamp() * 1000), r["s"], r["S"], r["v"], r["p"])
            for r in liquidations.to_pylist()] == [
        (e.ts, e.symbol, e.side, float(e.size), float(e.price))
        for e in evs if isinstance(e, Liquidation)]
    derivatives = pq.read_table(tmp_path / "inverse" / "derivatives").sort_by("ts")
    assert derivatives.schema.field("nextFundingTime").type == pa.timestamp("ms", tz="UTC")
    assert [(int(r["ts"].timestamp() * 1000), r["fundingRate"], r["openInterest"])
            for r in derivatives.to_pylist()] == [
        (e.ts, e.funding_rate, e.open_interest) for e in evs if isinstance(e, Derivatives)]
    funding = pq.read_table(tmp_path / "inverse" / "funding").sort_by("fundingTime")
    assert [(int(r["fundingTime"].timestamp() * 1000), r["fundingRate"])
            for r in funding.to_pylist()] == [
        (e.funding_time, e.funding_rate) for e in evs if isinstance(e, Funding)]
    books = pq.read_table(tmp_path / "linear" / "book").drop_columns(["date"])
    assert books.schema.field("bids").type == pa.list_(pa.list_(pa.string()))
    assert books.schema.field("engine_ts").type == pa.timestamp("ms", tz="UTC")

    def _ms(v):
        return None if v is None else int(v.timestamp() * 1000)

    got_books = sorted((r["symbol"], r["kind"], r["bids"], r["asks"], r["update_id"],
                        _ms(r["ts"]), r["seq"], _ms(r["engine_ts"]))
                       for r in books.to_pylist())
    assert got_books == sorted((b.symbol, b.kind, b.bids, b.asks, b.update_id, b.ts, b.seq,
                                b.engine_ts) for b in evs if isinstance(b, Book))


async def test_max_rows_cuts_files_at_exactly_that_size(plugin_manager, tmp_path):
    evs = [e for e in events(20) if isinstance(e, Trade) and e.channel == "linear"]
    await run_sink(plugin_manager, tmp_path, "parquet", [evs[:13], evs[13:]], max_rows=4)
    sizes = sorted(pq.read_metadata(f).num_rows
                   for f in (tmp_path / "linear" / "trades").rglob("*.parquet"))
    assert sizes == [4, 4, 4, 4, 4]  # 20 trades: never a file past max_rows


async def wait_real(predicate, seconds: float = 60.0) -> None:
    """Wait for what a worker thread does. Under a MockClock virtual time jumps whenever the
    trio side is idle, so only a real-time bound lets a loaded machine take its time; the
    waiting is done in a thread too, not by spinning the clock (that would starve the
    writer of the GIL)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not done after {seconds} s of real time"
        await trio.to_thread.run_sync(time.sleep, 0.01)


async def test_flush_interval_writes_without_shutdown(plugin_manager, tmp_path, autojump_clock):
    toml = PIPE.format(dir=tmp_path, format="jsonl", max_rows=1000, flush=5.0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        source = pipeline.node("in")
        sink = pipeline.node("files")
        source.push(events(2))
        await trio.sleep(1.0)
        assert not list(tmp_path.rglob("*.zst"))
        await trio.sleep(5.0)
        await wait_real(lambda: sink.files_written)
        # Written by the timer while the pipeline still runs: one file per partition
        # (linear and spot trades, klines, prices, tickers), all 12 events.
        assert sorted(sink.files_written) == sorted(tmp_path.rglob("*.zst"))
        assert len(sink.files_written) == 5
        assert sum(len(v) for v in read_jsonl(tmp_path).values()) == 12
        source.finish()


async def test_shutdown_flushes_and_a_write_error_is_counted(plugin_manager, tmp_path):
    # Files where the channels' folders should be: `check` cannot see that coming.
    for channel in ("linear", "spot"):
        (tmp_path / channel).write_text("a file where the folder should be")
    pipeline = await run_sink(plugin_manager, tmp_path, "jsonl", [events(3)])
    counts = pipeline.metrics()["files"]
    # One failed chunk per partition: linear and spot trades, klines, prices, tickers.
    assert counts["write_errors"] == 5 and counts["dropped_events"] == 18
    assert counts.get("files_written", 0) == 0


def test_config_errors_name_the_key(plugin_manager):
    from streamer._config import ConfigError, load_config_text

    with pytest.raises(ConfigError) as err:
        load_config_text(PIPE.format(dir="", format="csv", max_rows=1, flush=1),
                         plugin_manager, filename="t.toml", environ={})
    text = "\n".join(err.value.errors)
    assert "sinks[0].format: expected one of 'jsonl', 'parquet'" in text


async def test_a_chunk_that_cannot_be_written_leaves_no_file_and_is_counted(
        plugin_manager, tmp_path):
    bad = Trade("linear", "BTCUSDT", T0, "Buy", "not-a-price", "1", "x")
    good = Price("linear", "BTCUSDT", 1.5, T0)
    pipeline = await run_sink(plugin_manager, tmp_path, "parquet", [[bad, good]])
    counts = pipeline.metrics()["files"]
    assert counts["write_errors"] == 1 and counts["dropped_events"] == 1
    assert counts["files_written"] == 1  # the other partition is unaffected
    assert not list((tmp_path / "linear").rglob("*trades*/**/*.*"))
    assert [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")] == []


async def test_max_buffered_events_bounds_memory_before_any_timer(plugin_manager, tmp_path):
    toml = PIPE.format(dir=tmp_path, format="jsonl", max_rows=20, flush=3600.0)
    toml += "max_buffered_events = 20\n"
    evs = events(40)  # 240 events over 12 partitions: no partition reaches 20 by itself
    async with running_pipeline(toml, plugin_manager) as pipeline:
        source = pipeline.node("in")
        sink = pipeline.node("files")

        def taken() -> int:  # events the sink holds or has written
            return sink.buffered + pipeline.metrics()["files"].get("written_events", 0)

        seen = []
        for i in range(0, len(evs), 5):
            source.push(evs[i:i + 5])
            # One batch at a time, so the sink flushes at exactly 20, 40, ... events.
            await wait_real(lambda i=i: taken() == i + 5)
            seen.append(sink.buffered)
        written_before_shutdown = len(sink.files_written)
        source.finish()
    assert seen == [5, 10, 15, 0] * 12  # never 20 held: the 4th batch of each 20 is written
    # Each flush writes one file per partition among its 20 events (hour i is events
    # 6i..6i+5; hour 24 starts the second day); the hour-long timer never fired.
    hours = [j // 6 for j in range(len(evs))]
    parts = [{(type(evs[j]).__name__, evs[j].channel, hours[j] >= 24) for j in range(k, k + 20)}
             for k in range(0, len(evs), 20)]
    assert written_before_shutdown == sum(len(p) for p in parts)
    assert len(sink.files_written) == written_before_shutdown  # nothing left for shutdown
    assert sum(len(v) for v in read_jsonl(tmp_path).values()) == len(evs)


def test_every_bad_option_is_reported_with_its_path(plugin_manager):
    """Field validators, the one across fields included: every error shows at once."""
    from streamer._config import ConfigError, load_config_text

    toml = PIPE.format(dir="", format="jsonl", max_rows=10, flush=0.01)
    toml += "max_buffered_events = 5\nzstd_level = 20\n"
    with pytest.raises(ConfigError) as err:
        load_config_text(toml, plugin_manager, filename="t.toml", environ={})
    assert err.value.errors == [
        "t.toml: sinks[0].dir: expected the folder the files go to, got ''",
        "t.toml: sinks[0].flush_interval_s: expected 0.1 to 86400, got 0.01",
        "t.toml: sinks[0].max_buffered_events: max_buffered_events (5) must be at least "
        "max_rows (10)",
        "t.toml: sinks[0].zstd_level: expected 1 to 19, got 20",
    ]
    toml = PIPE.format(dir="d", format="jsonl", max_rows=0, flush=1)
    with pytest.raises(ConfigError) as err:
        load_config_text(toml, plugin_manager, filename="t.toml", environ={})
    assert err.value.errors == ["t.toml: sinks[0].max_rows: expected at least 1, got 0"]


async def test_readiness_goes_down_on_a_failed_write_and_back_on_a_good_one(
        plugin_manager, tmp_path):
    """/readyz sees what the sink sees: a flush that loses a file makes it not ready, with the
    cause; the next flush that writes every file makes it ready again."""
    from streamer._exposition import not_ready

    blocker = tmp_path / "linear"
    blocker.write_text("a file where the channel's folder should be")
    toml = PIPE.format(dir=tmp_path, format="jsonl", max_rows=1, flush=3600.0)
    async with running_pipeline(toml, plugin_manager) as pipeline:
        source = pipeline.node("in")
        counts = pipeline.metrics

        def ready() -> dict[str, list[str]]:
            return not_ready(pipeline, None, True)

        assert ready() == {}  # nothing written yet: nothing to say
        source.push([Price("linear", "BTCUSDT", 1.5, T0)])
        await wait_real(lambda: counts()["files"].get("write_errors", 0) == 1)
        assert ready() == {"files": [
            f"writes: 1 of 1 files not written, last: NotADirectoryError: [Errno 20] Not a "
            f"directory: '{blocker}/price/date=2025-11-26'"]}
        blocker.unlink()
        source.push([Price("linear", "BTCUSDT", 2.5, T0)])
        await wait_real(lambda: counts()["files"].get("files_written", 0) == 1)
        assert ready() == {}
        source.finish()
    assert counts()["files"]["dropped_events"] == 1


def _check_dir(plugin_manager, where: str) -> list[str]:
    from streamer.testing import config_errors

    return config_errors(PIPE.format(dir=where, format="jsonl", max_rows=1, flush=1),
                         plugin_manager)


def test_check_refuses_a_dir_that_cannot_take_files(plugin_manager, tmp_path):
    """Failure modes that hold for root too (the tests run as root): mode bits would not."""
    (tmp_path / "file").write_text("")
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert _check_dir(plugin_manager, "/proc") == [
        "s.toml: sinks[0]: dir: cannot create a file in '/proc': No such file or directory"]
    assert _check_dir(plugin_manager, "/proc/streamer/out") == [
        "s.toml: sinks[0]: dir: cannot create a file in '/proc' (to create "
        "'/proc/streamer/out' in it): No such file or directory"]
    assert _check_dir(plugin_manager, f"{tmp_path}/file/out") == [
        f"s.toml: sinks[0]: dir: '{tmp_path}/file' is not a folder"]
    assert _check_dir(plugin_manager, f"{loop}/out") == [
        f"s.toml: sinks[0]: dir: '{loop}/out' cannot be resolved: Too many levels of symbolic "
        "links"]
    assert _check_dir(plugin_manager, f"{tmp_path}/dangling") == [
        f"s.toml: sinks[0]: dir: '{tmp_path}/dangling' is a symbolic link to nothing "
        f"('{tmp_path}/nowhere')"]


def test_check_accepts_a_dir_it_would_create_and_leaves_nothing_behind(
        plugin_manager, tmp_path):
    """A missing folder is made at the first write (parents too), as before: `check` only
    tries its nearest existing ancestor, and removes its probe file."""
    assert _check_dir(plugin_manager, f"{tmp_path}/a/b") == []
    assert _check_dir(plugin_manager, str(tmp_path)) == []
    assert list(tmp_path.iterdir()) == []
