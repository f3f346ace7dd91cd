"""The nesting pre-scan refuses deep TOML before tomllib recurses, and only deep TOML."""

from __future__ import annotations

import sys

import pytest

from streamer._toml_depth import nesting_exceeds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth_of(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("text", [
    'a = "[[[[[[[[[["\n',
    "a = '{{{{{{{{{{'\n",
    'a = """\n[[[[[[[[[[\n"""\n',
    "a = '''[[[[[[[[[[\n'''\n",
    'a = "\\"[[[[[[[[[["\n',
    "# [[[[[[[[[[\na = 1\n",
    '[[sinks]]\ntype = "x"\nv = [[1, 2], [3]]\nt = {a = {b = 1}}\n',
])
def test_brackets_in_strings_comments_and_shallow_values_do_not_count(text: str) -> None:
    assert _depth_of(tomllib.loads(text)) <= 5
    assert not nesting_exceeds(text, 5)


def test_deep_arrays_and_inline_tables_are_found_without_parsing() -> None:
    assert nesting_exceeds("a = " + "[" * 6 + "]" * 6, 5)
    assert nesting_exceeds("a = " + "{b = " * 6 + "1" + "}" * 6, 5)
    assert not nesting_exceeds("a = " + "[" * 5 + "]" * 5, 5)
    # 10 million levels: refused at once, and no RecursionError anywhere.
    assert nesting_exceeds("a = " + "[" * 10_000_000, 32)
