"""How much of a configured value the loader accepts and how much of it an error shows.

A string option holds at most :data:`MAX_STRING` characters (a path, a URL, a key template
need far less); a longer one is refused, with its path and size, and cut in the data so that
nothing after it (structuring, validators, plugins' own messages) handles the whole of it.

An error shows at most :data:`SHOWN_CHARS` characters of a value: :func:`shown` formats one,
and :func:`cut_long_values` is the net for messages that format values themselves (a plugin's
validator writing ``got {value!r}``): every string or list of the file that is longer than
that is replaced, in each error line, by its cut form.
"""

from __future__ import annotations

import reprlib
from typing import Any

#: The most characters a string value (or a key) of the configuration may hold.
MAX_STRING = 4096
#: The most characters of a value an error message shows.
SHOWN_CHARS = 80

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = SHOWN_CHARS // 2  # an item among others
_repr.maxlist = _repr.maxtuple = 10
_repr.maxlevel = 3


def shown(value: Any) -> str:
    """``repr(value)`` for an error message: a string's first :data:`SHOWN_CHARS`
    characters (then ``...`` and its length), at most that many characters of the repr of
    anything else (then ``...``); bounded work however big the value."""
    if isinstance(value, str):
        if len(value) <= SHOWN_CHARS:
            return repr(value)
        return f"{value[:SHOWN_CHARS]!r}... ({len(value):,} characters)"
    text = _repr.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _walk(data: Any) -> list[tuple[Any, Any, str]]:
    """``(container, key or index, path)`` of every value and ``(None, key, path of its
    table)`` of every key; iterative (the depth is bounded before this runs)."""
    out: list[tuple[Any, Any, str]] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                where = f"{path}.{k}" if path else str(k)
                out.append((None, k, path))
                out.append((value, k, where))
                stack.append((v, where))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                out.append((value, i, f"{path}[{i}]"))
                stack.append((v, f"{path}[{i}]"))
    return out


def refuse_oversized(data: dict[str, Any], filename: str) -> list[str]:
    """An error for every string value or key longer than :data:`MAX_STRING`; each is cut
    to :data:`SHOWN_CHARS` characters in ``data`` (the run is refused anyway)."""
    errors: list[str] = []
    long_keys: list[tuple[dict[str, Any], str]] = []
    for container, key, path in _walk(data):
        if container is None:
            if isinstance(key, str) and len(key) > MAX_STRING:
                errors.append(f"{filename}: {path or '(top)'}: expected keys of at most "
                              f"{MAX_STRING:,} characters, got {shown(key)}")
            continue
        value = container[key]
        if isinstance(value, str) and len(value) > MAX_STRING:
            errors.append(f"{filename}: {path}: expected a string of at most {MAX_STRING:,} "
                          f"characters, got {shown(value)}")
            container[key] = value[:SHOWN_CHARS]
        if isinstance(value, dict):
            long_keys += [(value, k) for k in value if len(k) > MAX_STRING]
    if isinstance(data, dict):
        long_keys += [(data, k) for k in data if len(k) > MAX_STRING]
    for table, key in long_keys:
        table[key[:SHOWN_CHARS]] = table.pop(key)
    return errors


def cut_long_values(errors: list[str], data: dict[str, Any]) -> list[str]:
    """``errors`` with every string or list of ``data`` (keys too) whose ``repr`` is longer
    than :data:`SHOWN_CHARS` shown cut, wherever a message wrote it in full."""
    if all(len(line) <= SHOWN_CHARS for line in errors):
        return errors  # no line can hold a long value
    long: dict[str, str] = {}
    for container, key, _ in _walk(data):
        for value in (key,) if container is None else (container[key],):
            if isinstance(value, str) and len(value) > SHOWN_CHARS:
                long[repr(value)] = shown(value)
                long.setdefault(value, value[:SHOWN_CHARS] + "...")
            elif isinstance(value, list):
                text = repr(value)
                if len(text) > SHOWN_CHARS:
                    long[text] = shown(value)
    # Longest first: a list's repr holds its strings' reprs, a string's repr holds itself.
    order = sorted(long, key=len, reverse=True)
    out = []
    for line in errors:
        for text in order:
            if len(text) < len(line) and text in line:
                line = line.replace(text, long[text])
        out.append(line)
    return out
