"""``shard = "K/N"`` on the Bybit sources: a stable split of the symbol universe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer_bybit.shard import parse_shard, shard_of, shard_symbols
from streamer_bybit.source import BybitLinearConfig

UNIVERSE = [f"C{i:04d}USDT" for i in range(500)] + ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_shards_partition_the_universe(n: int) -> None:
    parts = [shard_symbols(UNIVERSE, f"{k}/{n}") for k in range(1, n + 1)]
    flat = [s for part in parts for s in part]
    assert sorted(flat) == sorted(UNIVERSE)  # union is everything, nothing twice
    assert len(set(flat)) == len(flat)
    if n > 1:  # and the split is not degenerate
        assert max(len(p) for p in parts) < 2 * len(UNIVERSE) / n


@given(st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1,
                        max_size=12), unique=True, max_size=50), st.integers(1, 9))
def test_each_symbol_in_exactly_one_shard(symbols: list[str], n: int) -> None:
    for s in symbols:
        owners = [k for k in range(1, n + 1) if s in shard_symbols(symbols, f"{k}/{n}")]
        assert owners == [shard_of(s, n)]


def test_the_hash_is_stable_across_processes() -> None:
    """Not Python's salted hash(): another interpreter with another PYTHONHASHSEED agrees
    (and the values are pinned, so a changed hash would fail here)."""
    code = ("from streamer_bybit.shard import shard_of;"
            "print([shard_of(s, 4) for s in ['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'XRPUSDT']])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed}, check=True, timeout=60).stdout.strip()
            for seed in ("1", "2")}
    assert outs == {str([shard_of(s, 4) for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT",
                                                  "XRPUSDT"]])}
    assert [shard_of(s, 4) for s in ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]] == \
        PINNED_BTC_ETH_SOL_XRP_OVER_4


PINNED_BTC_ETH_SOL_XRP_OVER_4 = [3, 3, 3, 4]


@pytest.mark.parametrize("bad", ["0/2", "3/2", "1/0", "a/b", "1-2", "", "1/2000"])
def test_bad_shard_is_a_config_error(bad: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(bad)
    with pytest.raises(ValueError, match="shard"):
        BybitLinearConfig(symbols=["BTCUSDT"], shard=bad)


def test_check_shows_the_shard_symbols(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('[[sources]]\nname = "a"\ntype = "bybit.linear"\n'
                      f'symbols = {UNIVERSE[:20]!r}\nshard = "2/3"\n'
                      '[[sinks]]\ntype = "console"\ninputs = ["a"]\n'
                      '[[sources]]\nname = "b"\ntype = "bybit.spot"\n'
                      'load_all_symbols = true\nshard = "1/3"\n')
    out = subprocess.run([sys.executable, "-m", "streamer", "check", "-c", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    mine = shard_symbols(UNIVERSE[:20], "2/3")
    assert f"shard 2/3: {len(mine)} of 20 symbols: {', '.join(mine)}" in out.stdout
    assert ("shard 1/3: the symbols are resolved at run (instruments-info), then split by the "
            "same stable hash") in out.stdout
