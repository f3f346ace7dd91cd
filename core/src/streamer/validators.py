"""attrs field validators for config classes, with messages in the config error style.

The config loader runs each field's validator on its own after structuring, so every range
error is reported with its dotted path (``sinks[0].queue_size: expected at least 1, got 0``),
not only the first. Any attrs validator works; these read well in that format. Their message
starts with the field's name, so a config class built directly in code says which field is
wrong too; the loader drops that prefix where the path already names the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


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
