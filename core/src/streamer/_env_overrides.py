"""``STREAMER_<SECTION>__<NODE>__<KEY>`` environment overrides of streamer.toml values.

``STREAMER_STREAMER__LOG_LEVEL=DEBUG`` sets ``[streamer] log_level``;
``STREAMER_SINKS__REDIS__URL=redis://db:6379`` sets ``url`` of the sink named ``redis``
(node names upper-cased, other characters as ``_``). A variable that names no section or no
node is an error (a typo must not be ignored), and an error in an overridden value names the
variable rather than the file.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from streamer._toml_depth import nesting_exceeds

ENV_PREFIX = "STREAMER_"
#: An override value nests at most this deep (the whole file's limit applies after it).
MAX_VALUE_DEPTH = 32
SECTIONS = ("sources", "transforms", "sinks")


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _parse_env_value(raw: str) -> Any:
    if nesting_exceeds(raw, MAX_VALUE_DEPTH):
        return raw  # kept as a string: the config then names the variable and what it expected
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw


def apply_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Apply the overrides; return ``{dotted path: variable}`` of those applied and an error
    for each ``STREAMER_*__*`` variable that names no section, key or node."""
    applied: dict[str, str] = {}
    errors: list[str] = []
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        parts = var[len(ENV_PREFIX):].split("__")
        section = parts[0].lower()
        if section == "streamer":
            if len(parts) != 2 or not parts[1]:
                errors.append(f"${var}: expected STREAMER_STREAMER__<KEY>")
                continue
            key = parts[1].lower()
            table = data.setdefault("streamer", {})
            if not isinstance(table, dict):
                continue  # the file's own error about [streamer] is reported
            table[key] = _parse_env_value(raw)
            applied[f"streamer.{key}"] = var
            continue
        if section not in SECTIONS:
            errors.append(f"${var}: no section {section!r}; expected STREAMER_STREAMER__<KEY> "
                          "or STREAMER_<SOURCES|TRANSFORMS|SINKS>__<NODE>__<KEY>")
            continue
        tables = data.get(section, [])
        tables = tables if isinstance(tables, list) else []
        names = [str(t.get("name", t.get("type", ""))) if isinstance(t, dict) else ""
                 for t in tables]
        if len(parts) != 3 or not parts[2]:
            errors.append(f"${var}: expected STREAMER_{parts[0]}__<NODE>__<KEY>")
            continue
        matched = [i for i, name in enumerate(names) if _env_key(name) == parts[1]]
        if not matched:
            known = ", ".join(f"{n} ({_env_key(n)})" for n in names if n) or "none"
            errors.append(f"${var}: no node of {section} is named {parts[1]!r}; "
                          f"{section} here: {known}")
            continue
        key = parts[2].lower()
        for i in matched:
            tables[i][key] = _parse_env_value(raw)
            applied[f"{section}[{i}].{key}"] = var
    return applied, errors


def blame_overrides(errors: list[str], filename: str, overrides: dict[str, str]) -> list[str]:
    """An error about a value an environment variable set names the variable, not the file."""
    out = []
    for error in errors:
        for path, var in overrides.items():
            prefix = f"{filename}: {path}"
            if error.startswith(prefix) and error[len(prefix):len(prefix) + 1] in (":", ".", "["):
                error = f"${var} (sets {path}){error[len(prefix):]}"
                break
        out.append(error)
    return out
