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


def at_least(bound: float) -> Validator:
    """``value >= bound`` (None passes: optional fields)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value < bound:
            raise ValueError(f"{attribute.name}: expected at least {bound:g}, got {value!r}")

    return check


def greater_than(bound: float) -> Validator:
    """``value > bound`` (None passes)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and value <= bound:
            raise ValueError(f"{attribute.name}: expected more than {bound:g}, got {value!r}")

    return check


def between(low: float, high: float) -> Validator:
    """``low <= value <= high`` (None passes)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"{attribute.name}: expected {low:g} to {high:g}, got {value!r}")

    return check
