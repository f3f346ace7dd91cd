"""``streamer.toml``: parse, structure (cattrs into attrs classes) and validate the pipeline.

Every error is collected, not just the first, and reported as
``<file>: <dotted.path>: <what was expected>, got <what was found>``, e.g.
``streamer.toml: sinks[1].flush_interval: expected a number, got 'fast'``.

Range checks belong in attrs validators on the fields (``attrs.field(validator=at_least(1))``):
they run after structuring, each on its own, so every range error shows at once with its
dotted path. ``__attrs_post_init__`` is for checks across fields. A config class may also
define ``validate(self, environ) -> list[str]`` for what depends on the environment (a key
variable that must be set, a host that needs auth): ``streamer check`` and ``streamer run``
both call it, and each message it returns is reported under the node's path.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from streamer._api import HasDefaultOverflow
from streamer._config_values import cut_long_values, refuse_oversized
from streamer._env_overrides import apply_overrides, blame_overrides
from streamer._logs import url_secret
from streamer._overflow import Overflow
from streamer._plugins import NodeKind, PluginManager
from streamer._settings import (
    SINK_KEYS,
    NodeConfig,
    PipelineConfig,
    SinkSettings,
    StreamerSettings,
)
from streamer._structure import (
    describe_value,
    make_converter,
    run_validate,
    structure_collecting,
)
from streamer._toml_depth import nesting_exceeds
from streamer.validators import at_least, between, greater_than

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KINDS: dict[str, NodeKind] = {"sources": "source", "transforms": "transform", "sinks": "sink"}
COMMON_KEYS = {"name", "type", "inputs"}
#: Keys that would put a secret in the file. Plugins take ``<secret>_env`` instead.
SECRET_KEY = re.compile(r"(^|_)(password|passwd|secret|auth_key|api_key|token)$")
#: What a ``*_env`` option must hold: the name of an environment variable.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Tables and arrays nested deeper than this are refused (no config needs more than a few).
MAX_DEPTH = 32


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


# -- environment overrides ------------------------------------------------------------------

def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply ``STREAMER_<SECTION>__<NAME>__<KEY>=value`` overrides in place.

    ``STREAMER_STREAMER__LOG_LEVEL=DEBUG`` sets ``[streamer] log_level``;
    ``STREAMER_SINKS__REDIS__URL=redis://db:6379`` sets ``url`` of the sink named ``redis``
    (node names upper-cased, other characters as ``_``). Values are read as TOML values when
    they parse (``20``, ``true``, ``["BTCUSDT"]``), else as plain strings. Returns the
    variables applied; raises :class:`ConfigError` for one that names no node.
    """
    applied, errors = apply_overrides(data, environ)
    if errors:
        raise ConfigError(errors)
    return sorted(set(applied.values()))


# -- input hygiene ----------------------------------------------------------------------------


def _non_finite(data: Any) -> list[tuple[str, float]]:
    """``(path, value)`` of every NaN or infinite number, wherever it is (options typed
    ``Any`` included); iterative, the depth is already bounded."""
    found: list[tuple[str, float]] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append((path, value))
        elif isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return sorted(found)


def _too_deep(data: Any, limit: int = MAX_DEPTH) -> str | None:
    """The path of the first value nested deeper than ``limit`` (iterative: no recursion)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path or "(top)"
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k), depth + 1)
                         for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def _secret_urls(value: Any, path: str) -> Iterable[tuple[str, str]]:
    """``(path, what)`` for every string in ``value`` that is a URL carrying a credential."""
    if isinstance(value, str):
        what = url_secret(value)
        if what:
            yield path, what
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _secret_urls(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secret_urls(v, f"{path}[{i}]")


# -- loading ---------------------------------------------------------------------------------


def load_config_file(
    path: str | os.PathLike[str], pm: PluginManager, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read the file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{p}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} "
                           f"(offset {exc.start}); save the file as UTF-8"]) from None
    return load_config_text(text, pm, filename=str(path), environ=environ)


def load_config_text(
    text: str,
    pm: PluginManager,
    *,
    filename: str = "streamer.toml",
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Parse and validate a pipeline; raise :class:`ConfigError` listing every problem."""
    if nesting_exceeds(text, MAX_DEPTH):
        raise ConfigError([f"{filename}: invalid TOML: arrays or tables nested too deeply "
                           f"(at most {MAX_DEPTH} levels)"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{filename}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{filename}: invalid TOML: arrays or tables nested too deeply "
                           f"(at most {MAX_DEPTH} levels)"]) from None
    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError([f"{filename}: {deep}: nested more than {MAX_DEPTH} levels deep"])
    env = os.environ if environ is None else environ
    overrides, env_errors = apply_overrides(data, env)
    deep = _too_deep(data)
    if deep is not None:
        var = next((v for p, v in overrides.items() if deep.startswith(p)), "an override")
        raise ConfigError([f"${var}: nested more than {MAX_DEPTH} levels deep"])
    try:
        config = build_config(data, pm, filename=filename, environ=env)
    except ConfigError as exc:
        raise ConfigError(env_errors + blame_overrides(exc.errors, filename, overrides)
                          ) from None
    if env_errors:
        raise ConfigError(env_errors)
    return config


def build_config(data: dict[str, Any], pm: PluginManager, *, filename: str,
                 environ: Mapping[str, str] | None = None) -> PipelineConfig:
    env = os.environ if environ is None else environ
    errors = refuse_oversized(data, filename)
    for key in data:
        if key != "streamer" and key not in KINDS:
            errors.append(f"{filename}: {key}: unknown section; expected one of: "
                          "streamer, sources, transforms, sinks")
    settings = structure_collecting(data.get("streamer", {}), StreamerSettings, "streamer",
                                    filename, errors)
    run_validate(settings, "streamer", filename, env, errors)
    nodes: dict[str, list[NodeConfig]] = {}
    for section, kind in KINDS.items():
        nodes[section] = []
        tables = data.get(section, [])
        if not isinstance(tables, list):
            errors.append(f"{filename}: {section}: expected an array of tables "
                          f"([[{section}]]), got {describe_value(tables)}")
            continue
        for index, table in enumerate(tables):
            node = _build_node(kind, index, table, pm, filename, env, errors)
            if node is not None:
                nodes[section].append(node)
    if not data.get("sources"):
        errors.append(f"{filename}: sources: at least one [[sources]] table is required")
    if not data.get("sinks"):
        errors.append(f"{filename}: sinks: at least one [[sinks]] table is required")
    config = PipelineConfig(filename, settings or StreamerSettings(), nodes["sources"],
                            nodes["transforms"], nodes["sinks"])
    _check_graph(config, errors)
    errors += [f"{filename}: {path}: expected a finite number, got {value!r}"
               for path, value in _non_finite(data)]
    if errors:  # a float field reports a NaN too: once
        raise ConfigError(cut_long_values(list(dict.fromkeys(errors)), data))
    return config


def _build_node(
    kind: NodeKind, index: int, table: Any, pm: PluginManager, filename: str,
    environ: Mapping[str, str], errors: list[str],
) -> NodeConfig | None:
    path = f"{kind}s[{index}]"
    if not isinstance(table, dict):
        errors.append(f"{filename}: {path}: expected a table, got {describe_value(table)}")
        return None
    type_name = table.get("type")
    known = pm.types_of(kind)
    if not isinstance(type_name, str):
        errors.append(f"{filename}: {path}.type: expected a string naming a {kind} type "
                      f"({', '.join(sorted(known)) or 'none installed'}), got "
                      f"{describe_value(type_name) if 'type' in table else 'nothing'}")
        return None
    spec = known.get(type_name)
    if spec is None:
        errors.append(f"{filename}: {path}.type: unknown {kind} type {type_name!r}; installed: "
                      f"{', '.join(sorted(known)) or 'none'} (see `streamer plugins`)")
        return None
    name = table.get("name", type_name)
    if not isinstance(name, str) or not name:
        errors.append(f"{filename}: {path}.name: expected a non-empty string, got "
                      f"{describe_value(name)}")
    inputs = table.get("inputs")
    if inputs is not None and not (
        isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
    ):
        errors.append(f"{filename}: {path}.inputs: expected a list of node names, got "
                      f"{describe_value(inputs)}")
    if inputs is not None and kind == "source":
        errors.append(f"{filename}: {path}.inputs: sources take no inputs")
    sink = SinkSettings()
    if kind == "sink":
        sink_table = {k: v for k, v in table.items() if k in SINK_KEYS}
        sink = (structure_collecting(sink_table, SinkSettings, path, filename, errors)
                or SinkSettings())
    own = {k: v for k, v in table.items()
           if k not in COMMON_KEYS and not (kind == "sink" and k in SINK_KEYS)}
    refused = set()
    for key, value in own.items():
        if SECRET_KEY.search(key):
            errors.append(f"{filename}: {path}.{key}: secrets are not read from the file; "
                          f"put it in an environment variable and name it with {key}_env")
            refused.add(key)
        elif key.endswith("_env") and isinstance(value, str) and not ENV_NAME.fullmatch(value):
            # Never echo the value: a secret pasted here by mistake would land in the log.
            errors.append(f"{filename}: {path}.{key}: expected the name of an environment "
                          "variable (letters, digits and _, not starting with a digit); the "
                          "value is not shown since it may be a secret")
            refused.add(key)
        else:
            for where, what in _secret_urls(value, f"{path}.{key}"):
                errors.append(f"{filename}: {where}: {what} in a URL; secrets are not read "
                              "from the file: leave it out and set the plugin's *_env option")
                refused.add(key)
    own = {k: v for k, v in own.items() if k not in refused}
    options = structure_collecting(own, spec.config_class, path, filename, errors)
    run_validate(options, path, filename, environ, errors)
    # Even an invalid node takes part in the graph checks, so every error shows at once.
    valid_inputs = isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
    type_default: Overflow = (spec.config_class.default_overflow
                              if isinstance(spec.config_class, HasDefaultOverflow) else "block")
    overflow: Overflow = sink.overflow if sink.overflow is not None else type_default
    return NodeConfig(kind, index, name if isinstance(name, str) else f"<{path}>", type_name,
                      tuple(inputs or ()) if valid_inputs and kind != "source" else (),
                      options, spec, sink.queue_size, overflow, sink.on_fatal,
                      sink.stall_timeout, sink.overflow is not None)


def _check_graph(config: PipelineConfig, errors: list[str]) -> None:
    f = config.filename
    seen: dict[str, str] = {}
    for node in config.nodes():
        if node.name in seen:
            errors.append(f"{f}: {node.path}.name: {node.name!r} is already the name of "
                          f"{seen[node.name]}; give each node a unique name")
        else:
            seen[node.name] = node.path
    producers = {n.name: n for n in [*config.sources, *config.transforms]}
    for node in [*config.transforms, *config.sinks]:
        if not node.inputs:
            defaults = config.sources if node.kind == "transform" else producers.values()
            node.inputs = tuple(n.name for n in defaults if n is not node)
        for i, name in enumerate(node.inputs):
            if name not in producers:
                kind = "a sink" if name in seen else "unknown"
                errors.append(f"{f}: {node.path}.inputs[{i}]: {name!r} is {kind}; expected "
                              f"the name of a source or transform "
                              f"({', '.join(sorted(producers)) or 'none'})")
            elif name == node.name:
                errors.append(f"{f}: {node.path}.inputs[{i}]: a node cannot feed itself")
    # Cycles among transforms (sources have no inputs, sinks have no outputs).
    graph = {t.name: [i for i in t.inputs if i in producers and producers[i].kind == "transform"]
             for t in config.transforms}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in graph.get(name, []):
            if state.get(dep) == 1:
                cycle = " -> ".join([*trail[trail.index(dep):], dep]) if dep in trail else dep
                errors.append(f"{f}: transforms: inputs form a cycle: {cycle}")
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def structure_options(cls: type, data: dict[str, Any], *, path: str = "options",
                      filename: str = "<options>") -> Any:
    """Structure ``data`` into ``cls`` with the strict converter (for tests and embedding)."""
    errors: list[str] = []
    result = structure_collecting(data, cls, path, filename, errors)
    if errors:
        raise ConfigError(errors)
    return result


__all__ = [
    "ConfigError",
    "NodeConfig",
    "PipelineConfig",
    "SinkSettings",
    "StreamerSettings",
    "apply_env_overrides",
    "at_least",
    "between",
    "greater_than",
    "load_config_file",
    "load_config_text",
    "make_converter",
    "structure_options",
]

