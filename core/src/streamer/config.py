"""``streamer.toml``: parse, structure (cattrs into attrs classes) and validate the pipeline.

Every error is collected, not just the first, and reported as
``<file>: <dotted.path>: <what was expected>, got <what was found>``, e.g.
``streamer.toml: sinks[1].flush_interval: expected a number, got 'fast'``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.v import transform_error

from streamer.inbox import Overflow
from streamer.plugins import PluginManager, TypeSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KINDS = {"sources": "source", "transforms": "transform", "sinks": "sink"}
COMMON_KEYS = {"name", "type", "inputs"}
SINK_KEYS = {"queue_size", "overflow"}
ENV_PREFIX = "STREAMER_"
#: Keys that would put a secret in the file. Plugins take ``<secret>_env`` instead.
SECRET_KEY = re.compile(r"(^|_)(password|passwd|secret|auth_key|api_key|token)$")


class ConfigError(Exception):
    """The configuration is invalid; ``errors`` lists every problem, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


@attrs.define
class StreamerSettings:
    """The ``[streamer]`` table."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: str | None = None
    #: Seconds allowed for sinks to flush after SIGINT/SIGTERM before they are cancelled.
    shutdown_timeout: float = 5.0
    #: Seconds between metric summaries in the log; 0 turns them off.
    stats_interval: float = 60.0
    #: "host:port" of the /metrics, /healthz and /readyz listener; None: off.
    metrics: str | None = None
    #: /readyz: a source part whose newest data is older than this (seconds) is not ready.
    ready_max_data_age: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.metrics is not None:
            from streamer.metrics_http import parse_address

            parse_address(self.metrics)
        if self.ready_max_data_age <= 0:
            raise ValueError(f"expected a positive number of seconds, got "
                             f"{self.ready_max_data_age}")
        if self.shutdown_timeout <= 0:
            raise ValueError(f"expected a positive number of seconds, got {self.shutdown_timeout}")
        if self.stats_interval < 0:
            raise ValueError(f"expected 0 or a positive number, got {self.stats_interval}")


@attrs.define
class NodeConfig:
    """One ``[[sources]]``, ``[[transforms]]`` or ``[[sinks]]`` table, structured."""

    kind: str
    index: int
    name: str
    type: str
    inputs: tuple[str, ...]
    options: Any
    spec: TypeSpec
    queue_size: int = 1000
    overflow: Overflow = "block"

    @property
    def path(self) -> str:
        return f"{self.kind}s[{self.index}]"


@attrs.define
class PipelineConfig:
    filename: str
    settings: StreamerSettings
    sources: list[NodeConfig]
    transforms: list[NodeConfig]
    sinks: list[NodeConfig]

    def nodes(self) -> list[NodeConfig]:
        return [*self.sources, *self.transforms, *self.sinks]


# -- a strict converter ---------------------------------------------------------------------


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "a table"


class _Expected(TypeError):
    pass


def _expect(ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise _Expected(f"expected {what}, got {_describe(value)}")


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_list(t: Any) -> bool:
    return t in (list, tuple) or get_origin(t) in (list, tuple)


def make_converter() -> cattrs.Converter:
    """cattrs, strict: no silent ``"1" -> 1``, no string iterated as a list of characters."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def s_int(v: Any, _: Any) -> int:
        _expect(isinstance(v, int) and not isinstance(v, bool), "an integer", v)
        return int(v)

    def s_float(v: Any, _: Any) -> float:
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool), "a number", v)
        return float(v)

    def s_str(v: Any, _: Any) -> str:
        _expect(isinstance(v, str), "a string", v)
        return str(v)

    def s_bool(v: Any, _: Any) -> bool:
        _expect(isinstance(v, bool), "true or false", v)
        return bool(v)

    def s_literal(v: Any, t: Any) -> Any:
        choices = get_args(t)
        _expect(v in choices and type(v) in {type(c) for c in choices},
                "one of " + ", ".join(repr(c) for c in choices), v)
        return v

    def s_list(v: Any, t: Any) -> Any:
        _expect(isinstance(v, list), "a list", v)
        args = get_args(t)
        elem = args[0] if args else Any
        out, errors = [], []
        for i, item in enumerate(v):
            try:
                out.append(item if elem is Any else conv.structure(item, elem))
            except Exception as exc:
                exc.__notes__ = [  # type: ignore[attr-defined]
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring @ index {i}", i, elem),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return tuple(out) if (t is tuple or get_origin(t) is tuple) else out

    conv.register_structure_hook(int, s_int)
    conv.register_structure_hook(float, s_float)
    conv.register_structure_hook(str, s_str)
    conv.register_structure_hook(bool, s_bool)
    conv.register_structure_hook_func(_is_literal, s_literal)
    conv.register_structure_hook_func(_is_list, s_list)
    return conv


_converter = make_converter()


def _format_exception(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        keys = ", ".join(sorted(exc.extra_fields))
        return f"unknown key(s) {keys}; expected one of: {', '.join(allowed) or '(none)'}"
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, (_Expected, ValueError)):
        return str(exc)
    if isinstance(exc, TypeError) and "NoneType" not in str(exc):
        return str(exc)
    return f"invalid value ({exc})"


def _structure(data: Any, cls: type, path: str, filename: str, errors: list[str]) -> Any:
    try:
        return _converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        for line in transform_error(exc, path=path, format_exception=_format_exception):
            message, _, where = line.rpartition(" @ ")
            errors.append(f"{filename}: {where}: {message}")
    except Exception as exc:
        errors.append(f"{filename}: {path}: {_format_exception(exc, cls)}")
    return None


# -- environment overrides -----------------------------------------------------------------


def _env_key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply ``STREAMER_<SECTION>__<NAME>__<KEY>=value`` overrides in place.

    ``STREAMER_STREAMER__LOG_LEVEL=DEBUG`` sets ``[streamer] log_level``;
    ``STREAMER_SINKS__REDIS__URL=redis://db:6379`` sets ``url`` of the sink named ``redis``
    (node names upper-cased, other characters as ``_``). Values are read as TOML values when
    they parse (``20``, ``true``, ``["BTCUSDT"]``), else as plain strings. Returns what was
    applied, for the log.
    """
    applied = []
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        parts = var[len(ENV_PREFIX):].split("__")
        section = parts[0].lower()
        if section == "streamer" and len(parts) == 2:
            data.setdefault("streamer", {})[parts[1].lower()] = _parse_env_value(raw)
            applied.append(var)
        elif section in KINDS and len(parts) == 3:
            for table in data.get(section, []):
                if isinstance(table, dict) and _env_key(
                    str(table.get("name", table.get("type", "")))
                ) == parts[1]:
                    table[parts[2].lower()] = _parse_env_value(raw)
                    applied.append(var)
    return applied


# -- loading ---------------------------------------------------------------------------------


def load_config_file(
    path: str | os.PathLike[str], pm: PluginManager, environ: Mapping[str, str] | None = None
) -> PipelineConfig:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read the file: {exc.strerror or exc}"]) from None
    return load_config_text(text, pm, filename=str(path), environ=environ)


def load_config_text(
    text: str,
    pm: PluginManager,
    *,
    filename: str = "streamer.toml",
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Parse and validate a pipeline; raise :class:`ConfigError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{filename}: invalid TOML: {exc}"]) from None
    apply_env_overrides(data, os.environ if environ is None else environ)
    return build_config(data, pm, filename=filename)


def build_config(data: dict[str, Any], pm: PluginManager, *, filename: str) -> PipelineConfig:
    errors: list[str] = []
    for key in data:
        if key != "streamer" and key not in KINDS:
            errors.append(f"{filename}: {key}: unknown section; expected one of: "
                          "streamer, sources, transforms, sinks")
    settings = _structure(data.get("streamer", {}), StreamerSettings, "streamer", filename, errors)
    nodes: dict[str, list[NodeConfig]] = {}
    for section, kind in KINDS.items():
        nodes[section] = []
        tables = data.get(section, [])
        if not isinstance(tables, list):
            errors.append(f"{filename}: {section}: expected an array of tables "
                          f"([[{section}]]), got {_describe(tables)}")
            continue
        for index, table in enumerate(tables):
            node = _build_node(kind, index, table, pm, filename, errors)
            if node is not None:
                nodes[section].append(node)
    if not data.get("sources"):
        errors.append(f"{filename}: sources: at least one [[sources]] table is required")
    if not data.get("sinks"):
        errors.append(f"{filename}: sinks: at least one [[sinks]] table is required")
    config = PipelineConfig(filename, settings or StreamerSettings(), nodes["sources"],
                            nodes["transforms"], nodes["sinks"])
    _check_graph(config, errors)
    if errors:
        raise ConfigError(errors)
    return config


def _build_node(
    kind: str, index: int, table: Any, pm: PluginManager, filename: str, errors: list[str]
) -> NodeConfig | None:
    path = f"{kind}s[{index}]"
    if not isinstance(table, dict):
        errors.append(f"{filename}: {path}: expected a table, got {_describe(table)}")
        return None
    type_name = table.get("type")
    known = pm.types_of(kind)
    if not isinstance(type_name, str):
        errors.append(f"{filename}: {path}.type: expected a string naming a {kind} type "
                      f"({', '.join(sorted(known)) or 'none installed'}), got "
                      f"{_describe(type_name) if 'type' in table else 'nothing'}")
        return None
    spec = known.get(type_name)
    if spec is None:
        errors.append(f"{filename}: {path}.type: unknown {kind} type {type_name!r}; installed: "
                      f"{', '.join(sorted(known)) or 'none'} (see `streamer plugins`)")
        return None
    start = len(errors)
    name = table.get("name", type_name)
    if not isinstance(name, str) or not name:
        errors.append(f"{filename}: {path}.name: expected a non-empty string, got "
                      f"{_describe(name)}")
    inputs = table.get("inputs")
    if inputs is not None and not (
        isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
    ):
        errors.append(f"{filename}: {path}.inputs: expected a list of node names, got "
                      f"{_describe(inputs)}")
    if inputs is not None and kind == "source":
        errors.append(f"{filename}: {path}.inputs: sources take no inputs")
    queue_size, overflow = table.get("queue_size", 1000), table.get("overflow", "block")
    if kind == "sink":
        if not (isinstance(queue_size, int) and not isinstance(queue_size, bool)
                and queue_size >= 1):
            errors.append(f"{filename}: {path}.queue_size: expected a positive integer, got "
                          f"{_describe(queue_size)}")
        if overflow not in ("block", "drop_oldest"):
            errors.append(f"{filename}: {path}.overflow: expected one of 'block', "
                          f"'drop_oldest', got {_describe(overflow)}")
    own = {k: v for k, v in table.items()
           if k not in COMMON_KEYS and not (kind == "sink" and k in SINK_KEYS)}
    for key in own:
        if SECRET_KEY.search(key):
            errors.append(f"{filename}: {path}.{key}: secrets are not read from the file; "
                          f"put it in an environment variable and name it with {key}_env")
    own = {k: v for k, v in own.items() if not SECRET_KEY.search(k)}
    options = _structure(own, spec.config_class, path, filename, errors)
    # Even an invalid node takes part in the graph checks, so every error shows at once.
    valid_inputs = isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)
    return NodeConfig(kind, index, name if isinstance(name, str) else f"<{path}>", type_name,
                      tuple(inputs or ()) if valid_inputs and kind != "source" else (),
                      options, spec,
                      queue_size if len(errors) == start else 1000,
                      overflow if overflow in ("block", "drop_oldest") else "block")


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
    result = _structure(data, cls, path, filename, errors)
    if errors:
        raise ConfigError(errors)
    return result


__all__ = [
    "ConfigError",
    "NodeConfig",
    "PipelineConfig",
    "StreamerSettings",
    "apply_env_overrides",
    "load_config_file",
    "load_config_text",
    "make_converter",
    "structure_options",
]

