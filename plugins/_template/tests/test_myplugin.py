import json

import trio

from streamer import Trade
from streamer.testing import running_pipeline


async def test_jsonl_sink_writes_wire_format(plugin_manager, tmp_path):
    out = tmp_path / "out.jsonl"
    toml = f"""
    [[sources]]
    name = "src"
    type = "testing.scripted"

    [[sinks]]
    type = "myplugin.jsonl"
    path = "{out}"
    """
    with trio.fail_after(10):
        async with running_pipeline(toml, plugin_manager) as pipeline:
            pipeline.node("src").push([Trade("linear", "BTCUSDT", 1, "Buy", "100", "1", "a")])
            pipeline.node("src").finish()
    (line,) = out.read_text().splitlines()
    assert json.loads(line) == {"channel": "linear", "data_type": "trades", "data": [
        {"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "100", "i": "a"}]}
