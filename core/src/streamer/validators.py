"""attrs field validators for config classes, with messages in the config error style.

The config loader runs each field's validator on its own after structuring, so every range
error is reported with its dotted path (``sinks[0].queue_size: expected at least 1, got 0``),
not only the first. Any attrs validator works; these read well in that format. Their message
starts with the field's name, so a config class built directly in code says which field is
wrong too; the loader drops that prefix where the path already names the field.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

#: ``attrs.field(default=None, metadata=RETIRED)``: an option that is no longer one, kept so
#: that setting it gets an error saying where it went; it is not listed among the expected
#: keys when a key is unknown.
RETIRED = {"retired": True}


#: A channel name: what a source calls the part of its market an event belongs to (its own
#: vocabulary: Bybit's "linear" and "spot", another exchange's "futures"). Sinks put it in
#: Redis keys, NATS subjects and folder names, so it is 1-32 ASCII letters, digits, "_" or
#: "-", starting with a letter or digit: never a separator (":", ".", "/"), a wildcard or a
#: glob character.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def channel_problem(name: object) -> str | None:
    """Why ``name`` is not a safe channel name (:data:`CHANNEL_NAME`), or None if it is."""
    if isinstance(name, str) and CHANNEL_NAME.fullmatch(name):
        return None
    shown = repr(name[:40]) if isinstance(name, str) else type(name).__name__
    return (f"bad channel name {shown}: 1-32 characters of A-Z a-z 0-9 _ -, starting with a "
            "letter or digit")


def _bound(value: float) -> str:
    """An int bound as written (``3600000``, not ``3.6e+06``), a float bound shortest."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def at_least(bound: float) -> Validator:
    """``value >= bound`` (None passes: optional fields)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value < bound:
            raise ValueError(
                f"{attribute.name}: expected at least {_bound(bound)}, got {value!r}"
            )

    return check


def greater_than(bound: float) -> Validator:
    """``value > bound`` (None passes)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value <= bound:
            raise ValueError(
                f"{attribute.name}: expected more than {_bound(bound)}, got {value!r}"
            )

    return check


def between(low: float, high: float) -> Validator:
    """``low <= value <= high`` (None passes)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(
                f"{attribute.name}: expected {_bound(low)} to {_bound(high)}, got {value!r}"
            )

    return check


def off_or_at_least(bound: float) -> Validator:
    """``value == 0`` (off) or ``value >= bound`` (None passes)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value != 0 and not value >= bound:
            raise ValueError(
                f"{attribute.name}: expected 0 (off) or at least {_bound(bound)}, got {value!r}"
            )

    return check


def at_least_field(other: str) -> Validator:
    """``value >= instance.<other>``: a check across fields, on the later field so that the
    loader reports it with the others (the bound's own validator reports a bad bound)."""

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        bound = getattr(instance, other)
        if not value >= bound:
            raise ValueError(f"{attribute.name} ({_bound(value)}) must be at least {other} "
                             f"({_bound(bound)})")

    return check


def unwritable_dir(path: str) -> str | None:
    """Why files cannot be written in the folder ``path``, or None when they can.

    For a ``validate(environ)`` step (``streamer check`` and ``streamer run``). A missing
    folder is fine when the writer could create it (as the files sink and the capture do,
    parents included): then the nearest existing ancestor is the one that must take a file.
    Writability is tried, not inferred from mode bits (root passes ``os.access`` on a
    read-only mount or ``/proc``): a probe file is created there and removed at once.
    Refused: a symlink loop or a dangling symlink on the way, a file where a folder should
    be, a folder that does not take a new file.
    """
    target = Path(path)
    for place in (target, *target.parents):
        try:
            mode = os.stat(place).st_mode
        except (FileNotFoundError, NotADirectoryError):
            if os.path.islink(place):
                return f"{str(place)!r} is a symbolic link to nothing ({os.readlink(place)!r})"
            continue  # missing: it would be created, so its parent must take it
        except OSError as exc:  # ELOOP, EACCES on the way, name too long
            return f"{str(place)!r} cannot be resolved: {exc.strerror or exc}"
        if not stat.S_ISDIR(mode):
            return f"{str(place)!r} is not a folder"
        try:
            fd, probe = tempfile.mkstemp(prefix=".streamer-write-check-", dir=place)
        except OSError as exc:
            what = "" if place == target else f" (to create {str(target)!r} in it)"
            return f"cannot create a file in {str(place)!r}{what}: {exc.strerror or exc}"
        os.close(fd)
        os.unlink(probe)
        return None
    return f"{path!r}: no existing folder on the way"  # pragma: no cover - "/" or "." exists
