"""``streamer_environment_warnings``: `streamer run` asks the plugins once about its
environment, telling them which variables the pipeline reads through ``*_env`` options, and
logs what they say; a plugin that fails is named and the others still speak."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Mapping, Set

import attrs
import pytest

from streamer import hookimpl
from streamer._cli import cmd_run
from streamer._config import load_config_text


@attrs.define
class KeyedOptions:
    key_env: str = "KEYEDTEST_KEY"
    secret_env: str = "KEYEDTEST_SECRET"
    label: str = "KEYEDTEST_LABEL"  # not an *_env option: not read from the environment


def refuse(config: KeyedOptions, context: object) -> object:
    raise ValueError("this source is never built")


class Plugin:
    """Names its variables that are set and not read; counts its calls."""

    calls: list[tuple[dict[str, str], frozenset[str]]]

    def __init__(self) -> None:
        self.calls = []

    @hookimpl
    def streamer_register_sources(self, register) -> None:  # type: ignore[no-untyped-def]
        register("test.keyed", KeyedOptions, refuse)

    @hookimpl
    def streamer_environment_warnings(self, environ: Mapping[str, str],
                                      read: Set[str]) -> list[str]:
        self.calls.append(({k: v for k, v in environ.items() if k.startswith("KEYEDTEST_")},
                           frozenset(read)))
        unread = sorted(k for k in environ if k.startswith("KEYEDTEST_") and k not in read)
        return [f"set, not read: {name}" for name in unread]


class Broken:
    @hookimpl
    def streamer_environment_warnings(self) -> list[str]:
        raise RuntimeError("boom")


class WrongType:
    @hookimpl
    def streamer_environment_warnings(self) -> str:
        return "a line, not a list"


PIPE = """
[streamer]
log_format = "json"
log_file = "{log}"

[[sources]]
name = "src"
type = "test.keyed"
key_env = "KEYEDTEST_KEY"
secret_env = "KEYEDTEST_OTHER_SECRET"

[[sinks]]
name = "out"
type = "testing.collect"
"""


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`streamer run` replaces the root logger's handlers: put them back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_the_config_names_the_variables_its_env_options_read(plugin_manager,
                                                             register_plugin) -> None:
    register_plugin(Plugin())
    config = load_config_text(PIPE.format(log="x.log"), plugin_manager, environ={})
    assert config.read_env() == {"KEYEDTEST_KEY", "KEYEDTEST_OTHER_SECRET"}


def test_run_logs_each_plugin_s_warnings_once(plugin_manager, register_plugin, tmp_path,
                                              monkeypatch, root_logging) -> None:
    plugin = Plugin()
    register_plugin(plugin)
    register_plugin(Broken(), "broken")
    register_plugin(WrongType(), "wrong_type")
    for name in ("KEYEDTEST_KEY", "KEYEDTEST_SECRET", "KEYEDTEST_LABEL", "KEYEDTEST_OTHER_SECRET"):
        monkeypatch.setenv(name, "1")
    log = tmp_path / "run.log"
    config = tmp_path / "streamer.toml"
    config.write_text(PIPE.format(log=log))
    assert cmd_run(argparse.Namespace(config=str(config), log_level=None), plugin_manager) == 1
    assert plugin.calls == [({"KEYEDTEST_KEY": "1", "KEYEDTEST_SECRET": "1", "KEYEDTEST_LABEL": "1",
                              "KEYEDTEST_OTHER_SECRET": "1"},
                             frozenset({"KEYEDTEST_KEY", "KEYEDTEST_OTHER_SECRET"}))]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    warnings = [line["message"] for line in lines if line["level"] == "WARNING"]
    assert sorted(warnings) == [
        "plugin 'broken': streamer_environment_warnings failed: RuntimeError: boom",
        "plugin 'wrong_type': streamer_environment_warnings failed: TypeError: expected a "
        "list of str, got 'a line, not a list'",
        "set, not read: KEYEDTEST_LABEL",
        "set, not read: KEYEDTEST_SECRET",
    ]
    assert any("cannot build the pipeline: ValueError: this source is never built"
               in line["message"] for line in lines)
