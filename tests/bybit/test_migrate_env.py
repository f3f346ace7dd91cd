"""`streamer migrate-env` (a command of the bybit plugin): the older streamer's .env becomes a
streamer.toml that `streamer check` accepts; `streamer run` names the older variables it
ignores (the plugin's `streamer_environment_warnings`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer._cli import build_parser
from streamer._config import load_config_text
from streamer._plugins import load_plugin_manager
from streamer_bybit.migrate_env import migrate
from streamer_bybit.oldenv import OLD_VARIABLES, parse_dotenv

SAMPLE = Path(__file__).with_name("older-streamer.env")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating.md"


@pytest.fixture(scope="module")
def pm():
    return load_plugin_manager()


def sample_env(**changes: str) -> dict[str, str]:
    env = parse_dotenv(SAMPLE.read_text())
    env.update(changes)
    return env


def check(text: str, pm):
    # The migrated file names its secrets by variable; the .env that held them still sets
    # them when the streamer runs (and `streamer check` refuses a key variable left unset).
    secrets = {k: v for k, v in sample_env().items() if k.endswith(("_PASSWORD", "_AUTH_KEY"))}
    return load_config_text(text, pm, filename="migrated.toml", environ=secrets)


def test_sample_becomes_a_valid_pipeline_without_secrets(pm) -> None:
    text = migrate(sample_env())
    config = check(text, pm)
    names = {n.name: n for n in config.nodes()}
    assert set(names) == {"linear", "linear_klines", "spot", "spot_klines", "klines", "redis",
                          "websocket", "storage"}
    assert names["linear"].options.streams == ["tickers", "price"]
    # Trades only feed the klines: STREAMER_ENABLE_TRADES_STREAM=false.
    assert names["linear_klines"].options.streams == ["trades"]
    assert names["linear_klines"].name not in names["redis"].inputs
    klines = names["klines"].options
    assert klines.intervals == ["1m", "5m", "1h", "4h", "1D"]
    assert klines.waiter and klines.waiter_latency_ms == 100
    redis = names["redis"].options
    assert (redis.host, redis.port, redis.db, redis.main_key) == ("redis", 6379, 0,
                                                                  "bybit-streamer")
    assert redis.password_env == "STREAMER_REDIS_PASSWORD"
    ws = names["websocket"].options
    assert (ws.host, ws.port, ws.path, ws.auth_user) == ("0.0.0.0", 9500, "/ws", "trader")
    assert ws.auth_key_env == "STREAMER_WSS_AUTH_KEY"
    storage = names["storage"].options
    assert storage.key_labels == "lower" and storage.flush_size == 100
    assert storage.interval_labels()[86_400_000] == "1d"
    assert config.settings.log_format == "json"
    assert "s3cret" not in text  # secrets become *_env references, never values
    assert "# " in text and "STREAMER_HOST='streamer.example.com'" in text


def test_kline_mode_and_published_trades(pm) -> None:
    text = migrate(sample_env(STREAMER_KLINES_MODE="true", STREAMER_ENABLE_TRADES_STREAM="true",
                              STREAMER_ENABLE_SPOT_STREAM="false",
                              STREAMER_AGGREGATOR_WAITER_LATENCY_MS="300"))
    config = check(text, pm)
    names = {n.name: n for n in config.nodes()}
    assert names["klines"].type == "klines.passthrough"
    assert names["linear_klines"].options.streams == ["klines"]
    assert names["linear_klines"].options.kline_intervals == ["1m", "5m", "1h", "4h", "1D"]
    assert "spot" not in names
    assert "STREAMER_AGGREGATOR_WAITER_LATENCY_MS has no effect" in text
    # Built from trades that are published anyway: one source feeds both.
    text = migrate(sample_env(STREAMER_ENABLE_TRADES_STREAM="true"))
    names = {n.name: n for n in check(text, pm).nodes()}
    assert "linear_klines" not in names
    assert names["klines"].inputs == ("linear", "spot")
    assert names["linear"].options.streams == ["trades", "tickers", "price"]


def test_what_has_no_equivalent_is_a_comment(pm) -> None:
    text = migrate(sample_env(STREAMER_KLINE_INTERVALS="500ms,15s,1m,60m,1w",
                              STREAMER_ENABLED_CONSUMERS="redis,kafka,console,websocket",
                              STREAMER_AGGREGATOR_WAITER_LATENCY_MS="300",
                              STREAMER_SOMETHING_NEW="1", STREAMER_WSS_AUTH_USER=""))
    config = check(text, pm)
    names = {n.name: n for n in config.nodes()}
    assert names["klines"].options.intervals == ["500ms", "15s", "1m", "1h", "1W"]
    assert names["websocket"].options.host == "127.0.0.1"  # no auth: loopback only
    assert names["klines"].options.waiter_latency_ms == 150
    assert {"redis", "console"} <= set(names) and "kafka" not in names
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for expected in ("'kafka' has no equivalent", "outside 80-150; used 150",
                     "STREAMER_SOMETHING_NEW: not a variable of the older streamer",
                     "refuses to start on a non-loopback host without auth_user"):
        assert expected in comments


def test_load_all_symbols_and_log_settings(pm) -> None:
    text = migrate({"STREAMER_BYBIT_LOAD_ALL_SYMBOLS": "true", "STREAMER_BYBIT_SYMBOLS_LIMIT": "50",
                    "STREAMER_ENABLE_TRADES_STREAM": "true", "STREAMER_LOG_LEVEL": "warn",
                    "STREAMER_LOG_FILE": "/var/log/streamer.log"})
    config = check(text, pm)
    linear = next(n for n in config.sources if n.name == "linear").options
    assert linear.load_all_symbols and linear.symbols_limit == 50
    assert config.settings.log_level == "WARNING"
    assert config.settings.log_file == "/var/log/streamer.log"
    assert "STREAMER_ENABLED_CONSUMERS is not set: a console sink" in text


def test_dotenv_syntax() -> None:
    env = parse_dotenv('# c\nexport A=1\nB="x y" \nC=\'q#r\'\nD=v # note\nnot a line\nA=2\n')
    assert env == {"A": "2", "B": "x y", "C": "q#r", "D": "v"}


def test_every_old_variable_is_documented_and_in_the_sample() -> None:
    doc = DOCS.read_text()
    sample = parse_dotenv(SAMPLE.read_text())
    for name in OLD_VARIABLES:
        assert f"`{name}`" in doc, name
        assert name in sample, name


IGNORED = ("ignored: STREAMER_BYBIT_SYMBOLS, STREAMER_KLINES_MODE are from the older "
           "streamer's .env and are not read here (the pipeline comes from streamer.toml); "
           "`streamer migrate-env .env` writes an equivalent streamer.toml")


def test_the_plugin_names_the_older_variables_set_and_not_read(pm) -> None:
    environ = {"STREAMER_BYBIT_SYMBOLS": "BTCUSDT", "STREAMER_KLINES_MODE": "true",
               "STREAMER_REDIS_PASSWORD": "x", "STREAMER_SINKS__REDIS__PORT": "1",
               "STREAMER_DISABLE_PLUGINS": "", "HOME": "/root"}
    # A sink reads the password through password_env: that one is not ignored.
    assert pm.environment_warnings(environ, {"STREAMER_REDIS_PASSWORD"}) == [IGNORED]
    assert pm.environment_warnings({**environ, "STREAMER_KLINES_MODE": ""},
                                   {"STREAMER_REDIS_PASSWORD", "STREAMER_BYBIT_SYMBOLS"}) == [
        "ignored: STREAMER_KLINES_MODE is from the older streamer's .env and is not read here "
        "(the pipeline comes from streamer.toml); `streamer migrate-env .env` writes an "
        "equivalent streamer.toml"]
    assert pm.environment_warnings({"HOME": "/"}, set()) == []


@pytest.mark.parametrize("mode", ["false", "true"])
def test_intervals_as_docs_migrating_says(pm, mode) -> None:
    """docs/migrating.md, "Intervals": built from trades every length is kept; in kline mode
    only Bybit's lengths, the others become comments."""
    text = migrate(sample_env(STREAMER_KLINE_INTERVALS="500ms,15s,7m,60m,1M,2M",
                              STREAMER_KLINES_MODE=mode))
    names = {n.name: n for n in check(text, pm).nodes()}
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    if mode == "false":
        assert names["klines"].options.intervals == ["500ms", "15s", "7m", "1h", "1M", "2M"]
        assert "STREAMER_KLINE_INTERVALS" not in comments
    else:
        assert names["klines"].options.intervals == ["1h", "1M"]
        assert names["linear_klines"].options.kline_intervals == ["1h", "1M"]
        for label in ("500ms", "15s", "7m", "2M"):
            assert f"STREAMER_KLINE_INTERVALS: '{label}': Bybit has no such kline" in comments
    docs = " ".join(DOCS.read_text().split())
    assert ("Built from trades (the default), every length it accepted is kept: `500ms`, "
            "`15s`, `7m`, `1M`") in docs
    assert "In kline mode only Bybit's lengths" in docs


def test_migrate_env_is_the_bybit_plugin_s_command(pm, tmp_path, capsys) -> None:
    assert pm.commands()["migrate-env"].plugin == "bybit"
    parser, commands = build_parser(pm)
    args = parser.parse_args(["migrate-env", str(SAMPLE)])
    assert commands["migrate-env"].main(args) == 0
    assert capsys.readouterr().out == migrate(sample_env(), source_name=str(SAMPLE))
    args = parser.parse_args(["migrate-env", str(tmp_path / "missing.env")])
    assert commands["migrate-env"].main(args) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'missing.env'}: cannot read the file")
