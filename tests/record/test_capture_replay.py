"""Capture from the fake Bybit, replay it: identical output twice, and the live run's klines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from streamer._api import FatalError
from streamer._events import Kline, Trade
from streamer_bybit.capture_format import SUFFIX, capture_files, read_records

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .helpers import REPLAY, live_run, pipe, replay_run, wire_lines


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    capture = tmp_path_factory.mktemp("capture")
    # The first minute two minutes into a 3m candle, as in test_verify.py: the same candles
    # every run.
    events, metrics, fake = live_run(capture, phase_3m=2)
    return capture, events, metrics, fake


def test_capture_writes_complete_files(recorded):
    capture, _, metrics, _ = recorded
    files = sorted(Path(capture).iterdir())
    assert files and all(f.name.endswith(SUFFIX) for f in files)  # no .part left behind
    kinds = set()
    trade_frames = 0
    for f in capture_files(capture):
        with open(f, "rb") as fh:
            for kind, _, _, body in read_records(fh):
                kinds.add(kind)
                if kind == 1:
                    trade_frames += sum(b'"topic":"publicTrade.' in frame for frame in body)
    assert kinds == {0, 1, 2, 3}  # header, frames, connection opened, end
    # Every trade message the fake sent: in minutes 0, 1, 3 and 4, five per symbol, one
    # ETHUSDT inside the waiter and one late BTCUSDT.
    assert trade_frames == 4 * (5 * 2 + 2)
    assert metrics["bybit"].get("capture_dropped_reads", 0) == 0


def test_replay_twice_is_byte_identical_and_equals_the_live_run(recorded):
    capture, live, _, _ = recorded
    first, pipeline = replay_run(capture)
    second, _ = replay_run(capture)
    assert wire_lines(first) == wire_lines(second)

    def klines(events):
        return [k for k in events if isinstance(k, Kline)]

    live_klines = klines(live)
    # Per symbol the transform's 1m candles 0-6 (6 closes 100 ms after minute 7, before the
    # end) and 3m ones of minute 0, 1-3 and 4-6; the source's stream confirms 1m 0, 1 and 3
    # (each on a later minute's first trade): 2 * (7 + 3 + 3).
    assert len([k for k in live_klines if k.closed]) == 26
    assert any(k.volume == 0 for k in live_klines)  # the flat minute, closed by the timer
    assert wire_lines(klines(first)) == wire_lines(live_klines)
    # the trades too, including the one inside the waiter and the late one
    assert [t for t in first if isinstance(t, Trade)] == [t for t in live if isinstance(t, Trade)]
    # The BTCUSDT trade 400 ms late after minutes 0, 1, 3, 4, dropped from its 1m candle and
    # also from the 3m one where the minute ends it (0 and 3).
    assert pipeline.metrics()["klines"]["late_trades"] == 6


def test_replay_at_a_finite_speed_gives_the_same_klines(recorded):
    """Paced (600x: the 7 recorded minutes in 0.7 s): time flows, still stops at frames."""
    capture, live, _, _ = recorded
    fast, _ = replay_run(capture, speed="600.0")
    assert wire_lines([k for k in fast if isinstance(k, Kline)]) == wire_lines(
        [k for k in live if isinstance(k, Kline)])


def test_streamer_run_replays_with_the_replay_clock(recorded, tmp_path):
    """The CLI path: ``streamer run`` takes the replay source's clock (else the kline timers
    would follow the real clock and close nothing of the recorded minutes)."""
    capture, live, _, _ = recorded
    config = tmp_path / "replay.toml"
    config.write_text(REPLAY.format(path=capture, speed='"max"') + """
[[transforms]]
name = "klines"
type = "klines.from_trades"
inputs = ["bybit"]
intervals = ["1m", "3m"]
first_candle = "partial"

[[sinks]]
type = "console"
inputs = ["klines"]
""")
    proc = subprocess.run([sys.executable, "-m", "streamer", "run", "-c", str(config)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    got = [[env["channel"], env["data_type"], item]
           for line in proc.stdout.splitlines() for env in [json.loads(line)]
           for item in env["data"]]
    want = [(k.channel, k.data_type, k.to_wire())
            for k in live if isinstance(k, Kline) and k.trade_count is not None]
    assert got == json.loads(json.dumps(want))


def _files_content(root: Path) -> dict[str, bytes]:
    """Each partition's JSON lines, its files concatenated in the order they were written."""
    out: dict[str, bytes] = {}
    files = sorted(root.rglob("*.jsonl.zst"), key=lambda f: int(f.name.split("-")[2][:6]))
    for f in files:
        key = str(f.parent.relative_to(root))
        out[key] = out.get(key, b"") + zstandard.ZstdDecompressor().stream_reader(
            f.read_bytes()).read()
    return out


def test_replay_into_the_files_sink_twice_gives_the_same_bytes(recorded, tmp_path):
    capture, _, _, _ = recorded
    outputs = []
    for run in ("a", "b"):
        sink = f"""
[[sinks]]
name = "files"
type = "files"
inputs = ["klines", "bybit"]
dir = "{tmp_path / run}"
format = "jsonl"
flush_interval_s = 30
"""
        replay_run(capture, pipe(extra_sinks=sink))
        outputs.append(_files_content(tmp_path / run))
    assert outputs[0] == outputs[1]
    assert {"linear/klines", "linear/trades", "linear/ticker"} <= {
        k.rsplit("/", 1)[0] for k in outputs[0]}


@pytest.mark.parametrize(("options", "error"), [
    ('speed = "fast"', 'sources[0].speed: expected a number more than 0 and at most 1000000 '
                       'or "max", got \'fast\''),
    ("speed = 0", 'sources[0].speed: expected a number more than 0 and at most 1000000 or '
                  '"max", got 0'),
    ('category = "inverse"', "category: expected one of"),
])
def test_replay_config_errors(options, error, plugin_manager):
    from streamer._config import ConfigError, load_config_text

    toml = f'[[sources]]\ntype = "bybit.replay"\npath = "x"\n{options}\n'
    with pytest.raises(ConfigError) as err:
        load_config_text(toml, plugin_manager, filename="r.toml", environ={})
    assert error in "\n".join(err.value.errors)


def test_every_bad_replay_option_is_reported_with_its_path(plugin_manager):
    """Field validators: the missing path and the bad speed show together."""
    from streamer._config import ConfigError, load_config_text

    toml = ('[[sources]]\ntype = "bybit.replay"\nspeed = 2e6\n'
            '[[sinks]]\ntype = "testing.collect"\n')
    with pytest.raises(ConfigError) as err:
        load_config_text(toml, plugin_manager, filename="r.toml", environ={})
    assert err.value.errors == [
        "r.toml: sources[0].path: expected a capture file or a folder of captures, got ''",
        'r.toml: sources[0].speed: expected a number more than 0 and at most 1000000 or '
        '"max", got 2000000.0',
    ]


def test_a_missing_capture_is_an_error_naming_it(tmp_path):
    import logging

    from streamer._api import Context
    from streamer._metrics import Metrics
    from streamer_bybit.replay import ReplayConfig, make_replay

    ctx = Context(name="r", type="bybit.replay", logger=logging.getLogger("r"),
                  metrics=Metrics())
    with pytest.raises(FileNotFoundError, match=r"no \.bybitcap\.zst capture files in"):
        make_replay(ReplayConfig(path=str(tmp_path)), ctx)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_replay(ReplayConfig(path=str(tmp_path / "nope.bybitcap.zst")), ctx)


async def test_a_replay_under_another_clock_stops_with_a_clear_error(recorded, plugin_manager):
    from streamer.testing import running_pipeline

    capture, _, _, _ = recorded
    toml = REPLAY.format(path=capture, speed='"max"') + pipe()
    with pytest.raises(BaseExceptionGroup) as err:
        async with running_pipeline(toml, plugin_manager):
            pass
    assert err.group_contains(FatalError, match="needs trio to run with its clock", depth=None)
