"""What ``streamer.toml`` becomes once structured: the ``[streamer]`` settings, the keys every
sink takes, and the nodes of the pipeline (:mod:`streamer._config` parses and checks them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from streamer._address import parse_address
from streamer._overflow import Overflow
from streamer._plugins import NodeKind, TypeSpec
from streamer.validators import at_least, at_least_field, greater_than, off_or_at_least

OnFatal = Literal["stop", "disable"]


@attrs.define
class StreamerSettings:
    """The ``[streamer]`` table."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    log_file: str | None = None
    #: Seconds allowed for sinks to flush after SIGINT/SIGTERM before they are cancelled.
    shutdown_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    #: Seconds between throughput lines in the log (streamer._stats); 0 turns them off.
    stats_interval: float = attrs.field(default=60.0, validator=off_or_at_least(0.1))
    #: "host:port" of the /metrics, /healthz and /readyz listener; None: off.
    metrics: str | None = None
    #: /readyz: a source part whose newest data is older than this (seconds) is not ready.
    ready_max_data_age: float = attrs.field(default=60.0, validator=greater_than(0))
    #: Ceilings of the metrics listener (``streamer._metrics_http.OpsLimits``, same defaults).
    metrics_max_connections_per_address: int = attrs.field(default=8, validator=at_least(1))
    metrics_max_connections: int = attrs.field(
        default=64, validator=[at_least(1), at_least_field("metrics_max_connections_per_address")])
    metrics_head_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    metrics_request_timeout: float = attrs.field(
        default=10.0, validator=[greater_than(0), at_least_field("metrics_head_timeout")])

    def validate(self, environ: Mapping[str, str]) -> list[str]:
        if self.metrics is not None:
            try:
                parse_address(self.metrics)
            except ValueError as exc:
                return [f"metrics: {exc}"]
        if self.log_file is None:
            return []
        target = Path(self.log_file)
        parent = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            return [f"log_file: {self.log_file!r} is a directory; name a file in it"]
        if not parent.is_dir():
            return [f"log_file: the directory {str(parent)!r} does not exist"]
        if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            return [f"log_file: {self.log_file!r} is not writable"]
        return []


@attrs.define
class SinkSettings:
    """The keys every ``[[sinks]]`` table takes besides name/type/inputs."""

    #: Batches the inbox holds.
    queue_size: int = attrs.field(default=1000, validator=at_least(1))
    #: What a full inbox does; None: the sink type's default (``block`` unless its config
    #: class sets ``default_overflow``).
    overflow: Overflow | None = None
    #: A FatalError of this sink: "stop" the whole run, or "disable" this sink alone.
    on_fatal: OnFatal = "stop"
    #: Seconds without taking from a non-empty inbox before the sink is reported as stalled.
    stall_timeout: float = attrs.field(default=5.0, validator=greater_than(0))


SINK_KEYS = {f.name for f in attrs.fields(SinkSettings)}


@attrs.define
class NodeConfig:
    """One ``[[sources]]``, ``[[transforms]]`` or ``[[sinks]]`` table, structured."""

    kind: NodeKind
    index: int
    name: str
    type: str
    inputs: tuple[str, ...]
    options: Any
    spec: TypeSpec
    queue_size: int = 1000
    overflow: Overflow = "block"
    on_fatal: OnFatal = "stop"
    stall_timeout: float = 5.0
    #: ``overflow`` was set in the table, not taken from the sink type's default.
    overflow_chosen: bool = False

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

    def read_env(self) -> frozenset[str]:
        """The environment variables the nodes read through their ``*_env`` options."""
        names: set[str] = set()
        for node in self.nodes():
            if attrs.has(type(node.options)):
                names.update(value for field in attrs.fields(type(node.options))
                             if field.name.endswith("_env")
                             and isinstance(value := getattr(node.options, field.name), str))
        return frozenset(names)
