"""Shared by the NATS tests: `streamer run` replicas in subprocesses against the in-process
fake Bybit, and reading the stream back."""

from __future__ import annotations

import collections
import signal
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import trio
from faults.procs import start_streamer
from nats_server import read_stream, stream_info
from pipelines import toml_list
from runtime_log import counters_in

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]

REPLICA_CONFIG = """
[streamer]
log_level = "INFO"
shutdown_timeout = 10
{streamer_extra}

[[sources]]
name = "linear"
type = "bybit.linear"
symbols = {symbols}
streams = ["trades"]
url = "{ws}"
rest_url = "{rest}"
{source_extra}

{transforms}

[[sinks]]
name = "nats"
type = "nats"
inputs = {sink_inputs}
url = {urls}
replicas = {replicas}
ack_timeout = 1.0
retry_max = 0.5
{sink_extra}
"""

KLINES = """
[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["linear"]
intervals = ["1m"]
first_candle = "partial"
waiter_latency_ms = 100
"""


def replica_config(path: Path, fake: Any, urls: list[str], *, symbols: list[str] = SYMBOLS,
                   replicas: int = 1, klines: bool = False, source_extra: str = "",
                   sink_extra: str = "", streamer_extra: str = "") -> Path:
    path.write_text(REPLICA_CONFIG.format(
        symbols=toml_list(symbols), ws=fake.ws_url("linear"), rest=fake.rest_url,
        urls=toml_list(urls), replicas=replicas, source_extra=source_extra,
        sink_extra=sink_extra, streamer_extra=streamer_extra, transforms=KLINES if klines else "",
        sink_inputs=toml_list(["linear", "klines"] if klines else ["linear"])))
    return path


async def wait_log(path: Path, text: str, proc: subprocess.Popen[bytes],
                   timeout: float = 30.0, count: int = 1) -> None:
    with trio.move_on_after(timeout):
        while True:
            log = path.read_text(errors="replace") if path.exists() else ""
            if log.count(text) >= count:
                return
            if proc.poll() is not None:
                raise AssertionError(f"streamer exited (rc={proc.returncode}) before logging "
                                     f"{text!r}:\n{log[-3000:]}")
            await trio.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout}s:\n"
                         f"{path.read_text(errors='replace')[-3000:]}")


async def start_replica(config: Path, log: Path) -> subprocess.Popen[bytes]:
    proc = start_streamer(config, log)
    await wait_log(log, "pipeline running", proc)
    return proc


async def stop_replica(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(timeout):
        while proc.poll() is None:
            await trio.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("streamer did not exit within the timeout after SIGTERM")
    return proc.returncode


def kill_replica(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


async def messages(urls: str | list[str], stream: str = "BYBIT") -> list[Any]:
    return await trio.to_thread.run_sync(read_stream, urls, stream)


async def stream_count(urls: str | list[str], stream: str = "BYBIT") -> int:
    try:
        info = await trio.to_thread.run_sync(stream_info, urls, stream)
    except Exception:  # not created yet, or the cluster is electing
        return -1
    return int(info.state.messages)


async def wait_stream_count(urls: str | list[str], n: int, timeout: float = 30.0,
                            stream: str = "BYBIT") -> int:
    """Wait until the stream holds at least ``n`` messages; return the count seen last."""
    seen = -1
    with trio.move_on_after(timeout):
        while True:
            seen = await stream_count(urls, stream)
            if seen >= n:
                return seen
            await trio.sleep(0.1)
    return seen


async def wait_stream_trades(urls: str | list[str], ids: list[str],
                             timeout: float = 30.0) -> None:
    """Wait until every trade id of ``ids`` is in the stream. Kline messages share the
    stream, so a message count can be reached before the last trades are stored; stopping a
    replica then would cut off trades it had not read yet."""
    want, have = set(ids), set()
    with trio.move_on_after(timeout):
        while True:
            have = set(trade_ids(await messages(urls)))
            if want <= have:
                return
            await trio.sleep(0.2)
    raise AssertionError(f"{len(want - have)} of {len(want)} trades not in the stream "
                         f"after {timeout}s")


def trade_ids(msgs: list[Any]) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    for m in msgs:
        env = msgspec.json.decode(m.data)
        if env["data_type"] == "trades":
            for t in env["data"]:
                out[t["i"]] += 1
    return out


def sent_trade_ids(fake: Any, symbols: list[str] = SYMBOLS) -> list[str]:
    return [t["i"] for s in symbols for t in fake.history("linear", s)]


def last_stats(log: Path, node: str) -> dict[str, int]:
    """The counters of ``node`` in the newest periodic stats line (``stats_interval``)."""
    out: dict[str, int] = {}
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if f"stats {node}:" in line:
            out = counters_in(line, f"stats {node}:")
    return out


async def wait_stats(log: Path, node: str, proc: subprocess.Popen[bytes], predicate: Any,
                     timeout: float = 60.0) -> dict[str, int]:
    """Wait until the process's own stats line for ``node`` satisfies ``predicate``; the
    timeout only turns a hang into a failure."""
    with trio.move_on_after(timeout):
        while True:
            stats = last_stats(log, node)
            if predicate(stats):
                return stats
            if proc.poll() is not None:
                raise AssertionError(f"streamer exited (rc={proc.returncode}):\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
            await trio.sleep(0.05)
    raise AssertionError(f"stats {node} never matched within {timeout}s: {last_stats(log, node)}"
                         f"\n{log.read_text(errors='replace')[-3000:]}")


def final_metrics(log: Path, node: str) -> dict[str, int]:
    for line in log.read_text(errors="replace").splitlines():
        if f"final {node}:" in line:
            return counters_in(line, f"final {node}:")
    return {}





def closed_kline_keys(msgs: list[Any]) -> collections.Counter[tuple[Any, ...]]:
    """(symbol, interval, start) of every closed kline in the stream (partial or not)."""
    out: collections.Counter[tuple[Any, ...]] = collections.Counter()
    for m in msgs:
        env = msgspec.json.decode(m.data)
        if env["data_type"] == "klines":
            for k in env["data"]:
                if k["closed"]:
                    out[(k["symbol"], k["interval"], k["timestamp"])] += 1
    return out


async def _publish_events(urls: list[str], events: list[Any], stream: str) -> None:
    import nats
    from nats.js.api import StreamConfig

    from streamer_nats.messages import msg_id_of, payload_of, subject_of

    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(StreamConfig(name=stream, subjects=["bybit.>"]))
        futs = [await js.publish_async(subject_of("bybit", e), payload_of(e),
                                       headers={"Nats-Msg-Id": msg_id_of(e)}) for e in events]
        for f in futs:
            await f
    finally:
        await nc.close()


async def publish_events(urls: str | list[str], events: list[Any], stream: str = "BYBIT"
                         ) -> None:
    """Put ``events`` into ``stream`` the way the sink does (one message per event)."""
    import asyncio

    servers = [urls] if isinstance(urls, str) else list(urls)
    await trio.to_thread.run_sync(lambda: asyncio.run(_publish_events(servers, events,
                                                                      stream)))


async def _consumer_info(urls: list[str], stream: str, durable: str) -> Any:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        return await nc.jetstream(timeout=5).consumer_info(stream, durable)
    finally:
        await nc.close()


async def consumer_info(urls: str | list[str], durable: str, stream: str = "BYBIT") -> Any:
    import asyncio

    servers = [urls] if isinstance(urls, str) else list(urls)
    return await trio.to_thread.run_sync(
        lambda: asyncio.run(_consumer_info(servers, stream, durable)))
