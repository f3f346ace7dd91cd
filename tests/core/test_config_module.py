"""``streamer.config.load_pipeline``: what a plugin's own command reads a streamer.toml with,
checked as ``streamer check`` checks it."""

from __future__ import annotations

import pytest

from streamer.config import ConfigError, load_pipeline


def test_load_pipeline_builds_the_nodes_with_the_installed_plugins(tmp_path):
    path = tmp_path / "streamer.toml"
    path.write_text('[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n\n'
                    '[[sinks]]\nname = "out"\ntype = "console"\ninputs = ["bybit.linear"]\n')
    pipeline = load_pipeline(path)
    assert [(n.name, n.type) for n in pipeline.sinks] == [("out", "console")]
    assert pipeline.sources[0].options.symbols == ["BTCUSDT"]


def test_load_pipeline_raises_every_error_with_its_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n\n'
                    '[[sinks]]\ntype = "console"\ninputs = ["nowhere"]\nformat = 3\n')
    with pytest.raises(ConfigError) as caught:
        load_pipeline(path)
    assert len(caught.value.errors) == 2
    assert all(line.startswith(f"{path}: sinks[0]") for line in caught.value.errors)
