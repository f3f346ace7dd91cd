"""Bounds on configured values: a string option's ceiling, and how much of a value an error
shows (a bad value is never echoed in full, whoever formats the message)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from streamer import hookimpl
from streamer._config_values import MAX_STRING, SHOWN_CHARS
from streamer.testing import config_errors


def _echo(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A plugin's own validator that writes the value in full, as many do."""
    if value and value != ["ok"]:
        raise ValueError(f"{attribute.name}: not what I want, got {value!r}")


@attrs.define
class Echoing:
    label: str = ""
    picky: str = attrs.field(default="", validator=_echo)
    many: list[str] = attrs.field(factory=list, validator=_echo)


class EchoPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sinks(register) -> None:  # type: ignore[no-untyped-def]
        register("echo", Echoing, lambda config, context: object())


@pytest.fixture
def pm(plugin_manager, register_plugin):  # type: ignore[no-untyped-def]
    register_plugin(EchoPlugin(), "echo-plugin")
    return plugin_manager


SRC = '[[sources]]\nname = "src"\ntype = "testing.scripted"\n'


def sink(options: str) -> str:
    return SRC + '[[sinks]]\ntype = "echo"\n' + options + "\n"


def test_a_string_at_the_ceiling_passes_one_past_it_is_refused(pm) -> None:
    assert MAX_STRING == 4096
    assert config_errors(sink(f'label = "{"a" * 4096}"'), pm) == []
    assert config_errors(sink(f'label = "{"a" * 4097}"'), pm) == [
        f"s.toml: sinks[0].label: expected a string of at most 4,096 characters, got "
        f"'{'a' * 80}'... (4,097 characters)"]


def test_a_huge_value_is_refused_once_and_shown_cut_everywhere(pm) -> None:
    """1 MB in an option with a choice: the size error, then the choice error, each with
    80 characters of it, not 1 MB."""
    toml = f'[streamer]\nlog_format = "{"x" * 1_000_000}"\n' + sink("")
    assert config_errors(toml, pm) == [
        "s.toml: streamer.log_format: expected a string of at most 4,096 characters, got "
        f"'{'x' * 80}'... (1,000,000 characters)",
        f"s.toml: streamer.log_format: expected one of 'text', 'json', got '{'x' * 80}'",
    ]


def test_a_value_under_the_ceiling_echoed_by_a_plugin_is_cut(pm) -> None:
    """The net behind every message: a plugin's validator writes ``got {value!r}``, the
    error shows 80 characters of a long string and a few items of a long list."""
    assert SHOWN_CHARS == 80
    long = "y" * 1000
    assert config_errors(sink(f'picky = "{long}"\nmany = ["{long}", "b"]'), pm) == [
        f"s.toml: sinks[0].picky: not what I want, got '{'y' * 80}'... (1,000 characters)",
        f"s.toml: sinks[0].many: not what I want, got ['{'y' * 17}...{'y' * 18}', 'b']",
    ]
    items = ", ".join(f'"s{i}"' for i in range(10_000))
    assert config_errors(sink(f"many = [{items}]"), pm) == [
        "s.toml: sinks[0].many: not what I want, got ['s0', 's1', 's2', 's3', 's4', 's5', "
        "'s6', 's7', 's8', 's9', ...]"]


def test_a_key_over_the_ceiling_is_refused_and_shown_cut(pm) -> None:
    key = "k" * 5000
    assert config_errors(sink(f'"{key}" = 1'), pm) == [
        f"s.toml: sinks[0]: expected keys of at most 4,096 characters, got '{'k' * 80}'... "
        "(5,000 characters)",
        f"s.toml: sinks[0]: unknown key(s) {'k' * 80}; expected one of: label, picky, many",
    ]
