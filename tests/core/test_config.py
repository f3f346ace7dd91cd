"""streamer.toml: structure, strictness, graph checks, env overrides, secrets."""

from __future__ import annotations

from typing import Any, Literal

import attrs
import pytest

from streamer import hookimpl
from streamer._config import (
    ConfigError,
    at_least,
    between,
    greater_than,
    load_config_file,
    load_config_text,
)
from streamer._logs import redact_url


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
        ("queue_size = 0", "s.toml: sinks[0].queue_size: expected at least 1, got 0"),
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
        "UNRELATED": "x",
    }
    cfg = load_config_text(SRC + '[[sinks]]\ntype = "fake.sink"\nflush_interval = 9\n', pm,
                           environ=environ)
    assert cfg.settings.log_level == "DEBUG"
    assert cfg.sinks[0].options.flush_interval == 0.25
    assert cfg.sinks[0].options.symbols == ["ETHUSDT"]
    assert cfg.sinks[0].options.url == "redis://db:6379/0"
    # A bad override is reported like a bad file value, but names the variable.
    errors = errors_of(SRC + '[[sinks]]\ntype = "fake.sink"\n', pm,
                       environ={"STREAMER_SINKS__FAKE_SINK__FLUSH_SIZE": "lots"})
    assert errors == ["$STREAMER_SINKS__FAKE_SINK__FLUSH_SIZE (sets sinks[0].flush_size): "
                      "expected an integer, got 'lots'"], errors


# -- bad input: every problem at once, one clear line each -------------------------------------


def test_override_naming_no_node_is_refused_with_the_node_names(pm) -> None:
    errors = errors_of(SRC + '[[sinks]]\nname = "redis"\ntype = "fake.sink"\n'
                       '[[sinks]]\nname = "my-sink"\ntype = "fake.sink"\n', pm,
                       environ={"STREAMER_SINKS__REDSI__URL": "redis://db:6379/0",
                                "STREAMER_SINKZ__REDIS__URL": "x",
                                "STREAMER_STREAMER__SHUTDOWN_TIMEOUT": "0"})
    assert errors == [
        "$STREAMER_SINKS__REDSI__URL: no node of sinks is named 'REDSI'; sinks here: "
        "redis (REDIS), my-sink (MY_SINK)",
        "$STREAMER_SINKZ__REDIS__URL: no section 'sinkz'; expected STREAMER_STREAMER__<KEY> "
        "or STREAMER_<SOURCES|TRANSFORMS|SINKS>__<NODE>__<KEY>",
        "$STREAMER_STREAMER__SHUTDOWN_TIMEOUT (sets streamer.shutdown_timeout): expected more "
        "than 0, got 0.0",
    ], errors


@attrs.define
class Ranged:
    port: int = attrs.field(default=1, validator=between(1, 65535))
    size: int = attrs.field(default=1, validator=at_least(1))
    timeout: float = attrs.field(default=1.0, validator=greater_than(0))
    label: str = "x"


class RangedPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("ranged", Ranged, lambda config, context: object())


def test_every_range_error_at_once_with_its_path(pm) -> None:
    pm.register(RangedPlugin(), "ranged")
    errors = errors_of('[streamer]\nshutdown_timeout = -1\nstats_interval = -2\n' + SRC
                       + '[[sinks]]\ntype = "ranged"\nport = 70000\nsize = 0\ntimeout = 0\n'
                       'queue_size = 0\nstall_timeout = 0\n', pm)
    assert sorted(errors) == sorted([
        "s.toml: streamer.shutdown_timeout: expected more than 0, got -1.0",
        "s.toml: streamer.stats_interval: expected 0 (off) or at least 0.1, got -2.0",
        "s.toml: sinks[0].port: expected 1 to 65535, got 70000",
        "s.toml: sinks[0].size: expected at least 1, got 0",
        "s.toml: sinks[0].timeout: expected more than 0, got 0.0",
        "s.toml: sinks[0].queue_size: expected at least 1, got 0",
        "s.toml: sinks[0].stall_timeout: expected more than 0, got 0.0",
    ]), errors


def test_stats_interval_is_off_or_at_least_a_tenth_of_a_second(pm) -> None:
    # A shorter period would fill the log with lines per node faster than anyone reads them.
    sink = '[[sinks]]\ntype = "fake.sink"\n'
    assert errors_of('[streamer]\nstats_interval = 0.05\n' + SRC + sink, pm) == [
        "s.toml: streamer.stats_interval: expected 0 (off) or at least 0.1, got 0.05"]
    for fine in (0, 0.1, 60):
        config = load_config_text(f'[streamer]\nstats_interval = {fine}\n' + SRC + sink, pm,
                                  environ={})
        assert config.settings.stats_interval == fine


def test_a_mistyped_option_does_not_hide_the_range_errors_beside_it(pm) -> None:
    pm.register(RangedPlugin(), "ranged")
    errors = errors_of(SRC + '[[sinks]]\ntype = "ranged"\nport = "eighty"\nsize = 0\n'
                       'label = 3\n', pm)
    assert sorted(errors) == sorted([
        "s.toml: sinks[0].port: expected an integer, got 'eighty'",
        "s.toml: sinks[0].label: expected a string, got 3",
        "s.toml: sinks[0].size: expected at least 1, got 0",
    ]), errors
    # An unknown key may be a misspelt one: its range is checked once the name is right.
    errors = errors_of(SRC + '[[sinks]]\ntype = "ranged"\nprot = 1\nsize = 0\n', pm)
    assert errors == ["s.toml: sinks[0]: unknown key(s) prot; did you mean `port`? expected "
                      "one of: port, size, timeout, label"], errors


def test_nan_and_infinity_are_refused_everywhere(pm) -> None:
    errors = errors_of('[streamer]\nshutdown_timeout = nan\nstats_interval = inf\n' + SRC
                       + '[[sinks]]\ntype = "fake.sink"\nflush_interval = -inf\n', pm)
    assert sorted(errors) == [
        "s.toml: sinks[0].flush_interval: expected a finite number, got -inf",
        "s.toml: streamer.shutdown_timeout: expected a finite number, got nan",
        "s.toml: streamer.stats_interval: expected a finite number, got inf",
    ], errors


def test_env_name_options_must_be_variable_names_and_are_never_echoed(pm) -> None:
    errors = errors_of(SRC + '[[sinks]]\ntype = "fake.sink"\n'
                       'password_env = "hunter2-pasted-secret!"\n', pm)
    assert len(errors) == 1 and errors[0].startswith(
        "s.toml: sinks[0].password_env: expected the name of an environment variable"), errors
    assert "hunter2" not in errors[0]


@pytest.mark.parametrize("url, what", [
    ("redis://127.0.0.1:6379/0?password=hunter2", "query parameter 'password'"),
    ("redis://user:hunter2@127.0.0.1:6379/0", "a password"),
    ("wss://example.com/feed?token=hunter2", "query parameter 'token'"),
])
def test_credentials_in_a_url_are_refused_and_not_echoed(pm, url: str, what: str) -> None:
    errors = errors_of(SRC + f'[[sinks]]\ntype = "fake.sink"\nurl = "{url}"\n', pm)
    assert errors == [f"s.toml: sinks[0].url: {what} in a URL; secrets are not read from the "
                      "file: leave it out and set the plugin's *_env option"], errors


def test_redact_url() -> None:
    assert (redact_url("redis://u:pw@h:6379/0?db=1&password=pw")
            == "redis://u:***@h:6379/0?db=1&password=***")
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"


def test_log_file_in_a_missing_directory_or_a_directory(pm, tmp_path) -> None:
    (error,) = errors_of(f'[streamer]\nlog_file = "{tmp_path}/nope/s.log"\n' + SRC
                         + '[[sinks]]\ntype = "fake.sink"\n', pm)
    assert error == f"s.toml: streamer: log_file: the directory '{tmp_path}/nope' does not exist"
    (error,) = errors_of(f'[streamer]\nlog_file = "{tmp_path}"\n' + SRC
                         + '[[sinks]]\ntype = "fake.sink"\n', pm)
    assert error == f"s.toml: streamer: log_file: '{tmp_path}' is a directory; name a file in it"


def test_a_config_class_validate_step_runs_with_the_environment(pm) -> None:
    @attrs.define
    class NeedsKey:
        key_env: str = "MY_KEY"

        def validate(self, environ) -> list[str]:  # type: ignore[no-untyped-def]
            return [] if environ.get(self.key_env) else [f"${self.key_env} is unset"]

    class NeedsKeyPlugin:
        @staticmethod
        @hookimpl
        def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
            register("needs.key", NeedsKey, lambda config, context: object())

    pm.register(NeedsKeyPlugin(), "needs-key")
    text = SRC + '[[sinks]]\ntype = "needs.key"\n'
    assert errors_of(text, pm) == ["s.toml: sinks[0]: $MY_KEY is unset"]
    load_config_text(text, pm, environ={"MY_KEY": "k"})


def test_a_file_that_is_not_utf8_is_one_clear_error(pm, tmp_path) -> None:
    path = tmp_path / "s.toml"
    raw = SRC.encode() + b'[[sinks]]\ntype = "fake.sink"\n# caf\xe9\n'
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as info:
        load_config_file(path, pm, environ={})
    assert info.value.errors == [f"{path}: not UTF-8 text: byte 0xe9 at line 6 (offset "
                                 f"{raw.index(0xE9)}); save the file as UTF-8"]


@pytest.mark.parametrize("value", ["[" * 100_000 + "]" * 100_000,
                                   "{a = " * 100 + "1" + "}" * 100,
                                   "[" * 40 + "]" * 40])
def test_deeply_nested_toml_is_one_clear_error(pm, value: str) -> None:
    (error,) = errors_of(SRC + f'[[sinks]]\ntype = "fake.sink"\nsymbols = {value}\n', pm)
    assert error.startswith("s.toml: ") and "nested" in error and "deep" in error, error


def test_field_validators_name_the_field_when_a_config_is_built_in_code() -> None:
    from streamer._config import SinkSettings

    with pytest.raises(ValueError, match=r"^queue_size: expected at least 1, got 0$"):
        SinkSettings(queue_size=0)


def test_nan_is_refused_even_where_any_value_is_taken(pm) -> None:
    @attrs.define
    class Loose:
        extra: Any = None

    class LoosePlugin:
        @staticmethod
        @hookimpl
        def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
            register("loose", Loose, lambda config, context: object())

    pm.register(LoosePlugin(), "loose")
    errors = errors_of(SRC + '[[sinks]]\ntype = "loose"\nextra = {a = [1.0, nan]}\n', pm)
    assert errors == ["s.toml: sinks[0].extra.a[1]: expected a finite number, got nan"], errors


def test_a_bound_from_another_field_names_both() -> None:
    from streamer.validators import at_least_field

    @attrs.define
    class Backoff:
        initial: float = 1.0
        most: float = attrs.field(default=2.0, validator=at_least_field("initial"))

    assert Backoff(initial=3, most=3).most == 3
    with pytest.raises(ValueError, match=r"^most \(0\.5\) must be at least initial \(1\)$"):
        Backoff(most=0.5)
    with pytest.raises(ValueError, match=r"^most \(2\) must be at least initial \(3000000\)$"):
        Backoff(initial=3_000_000, most=2)
