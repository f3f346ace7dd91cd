"""streamer.toml: structure, strictness, graph checks, env overrides, secrets."""

from __future__ import annotations

from typing import Literal

import attrs
import pytest

from streamer import hookimpl
from streamer.config import ConfigError, load_config_file, load_config_text


@attrs.define
class FakeSinkConfig:
    flush_interval: float = 1.0
    flush_size: int = 100
    mode: Literal["a", "b"] = "a"
    symbols: list[str] = attrs.Factory(list)
    url: str | None = None
    password_env: str = "STREAMER_TEST_PASSWORD"

    def __attrs_post_init__(self) -> None:
        if self.flush_size < 1:
            raise ValueError(f"flush_size: expected at least 1, got {self.flush_size}")


class ConfigPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("fake.sink", FakeSinkConfig, lambda config, context: object())

    @staticmethod
    @hookimpl
    def streamer_register_transforms(register) -> None:  # type: ignore[no-untyped-def]
        register("fake.transform", FakeSinkConfig, lambda config, context: object())


@pytest.fixture
def pm(plugin_manager, register_plugin):  # type: ignore[no-untyped-def]
    register_plugin(ConfigPlugin(), "config-plugin")
    return plugin_manager


def errors_of(text: str, pm, **kw) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load_config_text(text, pm, filename="s.toml", environ=kw.get("environ", {}))
    return info.value.errors


SRC = '[[sources]]\nname = "src"\ntype = "testing.scripted"\n'


def test_valid_pipeline_defaults_and_wiring(pm) -> None:
    cfg = load_config_text(
        SRC + '[[transforms]]\nname = "t"\ntype = "fake.transform"\n'
        '[[sinks]]\ntype = "fake.sink"\nflush_interval = 2\nsymbols = ["BTCUSDT"]\n'
        'overflow = "drop_oldest"\nqueue_size = 5\n', pm, environ={})
    assert cfg.settings.log_level == "INFO"
    (transform,) = cfg.transforms
    assert transform.inputs == ("src",)  # transforms default to every source
    (sink,) = cfg.sinks
    assert sink.name == "fake.sink"  # name defaults to the type
    assert sink.inputs == ("src", "t")  # sinks default to every source and transform
    assert sink.options == FakeSinkConfig(flush_interval=2.0, symbols=["BTCUSDT"])
    assert isinstance(sink.options.flush_interval, float)
    assert (sink.queue_size, sink.overflow) == (5, "drop_oldest")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('flush_interval = "fast"',
         "s.toml: sinks[0].flush_interval: expected a number, got 'fast'"),
        ("flush_size = 1.5", "s.toml: sinks[0].flush_size: expected an integer, got 1.5"),
        ("flush_size = true", "s.toml: sinks[0].flush_size: expected an integer, got True"),
        ("flush_size = 0", "s.toml: sinks[0]: flush_size: expected at least 1, got 0"),
        ('mode = "c"', "s.toml: sinks[0].mode: expected one of 'a', 'b', got 'c'"),
        ('symbols = "BTCUSDT"', "s.toml: sinks[0].symbols: expected a list, got 'BTCUSDT'"),
        ('symbols = ["A", 2]', "s.toml: sinks[0].symbols[1]: expected a string, got 2"),
        ("url = 5", "s.toml: sinks[0].url: expected a string, got 5"),
        ("colour = 1", "s.toml: sinks[0]: unknown key(s) colour; expected one of: "
                       "flush_interval, flush_size, mode, symbols, url, password_env"),
        ('password = "hunter2"', "s.toml: sinks[0].password: secrets are not read from the "
                                 "file; put it in an environment variable and name it with "
                                 "password_env"),
        ('overflow = "never"', "s.toml: sinks[0].overflow: expected one of 'block', "
                               "'drop_oldest', got 'never'"),
        ("queue_size = 0", "s.toml: sinks[0].queue_size: expected a positive integer, got 0"),
        ('inputs = "src"', "s.toml: sinks[0].inputs: expected a list of node names, got 'src'"),
    ],
)
def test_each_kind_of_sink_error(pm, table: str, expected: str) -> None:
    errors = errors_of(SRC + f'[[sinks]]\ntype = "fake.sink"\n{table}\n', pm)
    assert expected in errors, errors


def test_every_error_at_once(pm) -> None:
    errors = errors_of(
        '[streamer]\nlog_level = "LOUD"\n[bogus]\nx = 1\n' + SRC
        + '[[sinks]]\ntype = "fake.sink"\nflush_interval = "x"\nflush_size = "y"\n'
        + '[[sinks]]\ntype = "nope"\n', pm)
    assert len(errors) == 5, errors
    assert errors[0].startswith("s.toml: bogus: unknown section")


def test_graph_errors(pm) -> None:
    errors = errors_of(
        SRC + '[[transforms]]\nname = "a"\ntype = "fake.transform"\ninputs = ["b"]\n'
        '[[transforms]]\nname = "b"\ntype = "fake.transform"\ninputs = ["a"]\n'
        '[[sinks]]\nname = "src"\ntype = "fake.sink"\ninputs = ["ghost", "src"]\n', pm)
    assert any("transforms: inputs form a cycle: a -> b -> a" in e for e in errors), errors
    assert any("sinks[0].name: 'src' is already the name of sources[0]" in e for e in errors)
    assert any("sinks[0].inputs[0]: 'ghost' is unknown" in e for e in errors)


def test_sections_required_and_types(pm) -> None:
    errors = errors_of('[[sinks]]\ntype = "fake.sink"\n', pm)
    assert "s.toml: sources: at least one [[sources]] table is required" in errors
    errors = errors_of(SRC, pm)
    assert "s.toml: sinks: at least one [[sinks]] table is required" in errors
    errors = errors_of(SRC + "[[sinks]]\nname = 'x'\n", pm)
    assert any(e.startswith("s.toml: sinks[0].type: expected a string naming a sink type")
               for e in errors)
    errors = errors_of("sources = 3\n", pm)
    assert any("sources: expected an array of tables" in e for e in errors)


def test_invalid_toml_names_the_file_and_line(pm) -> None:
    (error,) = errors_of("[[sources]\n", pm)
    assert error.startswith("s.toml: invalid TOML:") and "line 1" in error


def test_unreadable_file(pm, tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_file(tmp_path / "missing.toml", pm)
    assert "missing.toml: cannot read the file" in info.value.errors[0]


def test_environment_overrides(pm) -> None:
    environ = {
        "STREAMER_STREAMER__LOG_LEVEL": "DEBUG",
        "STREAMER_SINKS__FAKE_SINK__FLUSH_INTERVAL": "0.25",
        "STREAMER_SINKS__FAKE_SINK__SYMBOLS": '["ETHUSDT"]',
        "STREAMER_SINKS__FAKE_SINK__URL": "redis://db:6379/0",
        "STREAMER_SINKS__OTHER__URL": "ignored",
        "UNRELATED": "x",
    }
    cfg = load_config_text(SRC + '[[sinks]]\ntype = "fake.sink"\nflush_interval = 9\n', pm,
                           environ=environ)
    assert cfg.settings.log_level == "DEBUG"
    assert cfg.sinks[0].options.flush_interval == 0.25
    assert cfg.sinks[0].options.symbols == ["ETHUSDT"]
    assert cfg.sinks[0].options.url == "redis://db:6379/0"
    # A bad override is reported like a bad file value.
    errors = errors_of(SRC + '[[sinks]]\ntype = "fake.sink"\n', pm,
                       environ={"STREAMER_SINKS__FAKE_SINK__FLUSH_SIZE": "lots"})
    assert "s.toml: sinks[0].flush_size: expected an integer, got 'lots'" in errors
