"""Plugin discovery and the typed facade over pluggy.

Everything outside this module asks :class:`PluginManager` for what plugins registered; no
other module touches ``pm.hook``. Built-in plugins are found exactly like third-party ones:
through the ``streamer.plugins`` entry-point group of installed distributions.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from streamer import hookspecs
from streamer.api import Factory
from streamer.events import Event

ENTRY_POINT_GROUP = "streamer.plugins"
DISABLE_ENV = "STREAMER_DISABLE_PLUGINS"


class PluginError(Exception):
    """Two plugins claim the same type, or a plugin registered something malformed."""


@attrs.define(frozen=True)
class TypeSpec:
    """A source, transform or sink type as a plugin registered it."""

    kind: str  # "source" | "transform" | "sink"
    type_name: str
    config_class: type
    factory: Factory
    plugin: str


@attrs.define(frozen=True)
class CommandSpec:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    main: Callable[[argparse.Namespace], int]
    plugin: str


@attrs.define(frozen=True)
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    types: tuple[str, ...]


@attrs.define(frozen=True)
class PluginFailure:
    name: str
    distribution: str | None
    error: str


class PluginManager:
    """Loads plugins and answers, with types, what they add."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self.failures: list[PluginFailure] = []
        self.blocked: list[str] = []
        self._types: dict[str, dict[str, TypeSpec]] | None = None

    # -- loading -------------------------------------------------------------------------

    def load_entry_points(self, environ: dict[str, str] | None = None) -> None:
        """Import every ``streamer.plugins`` entry point, except those blocked by
        ``STREAMER_DISABLE_PLUGINS=a,b``. A plugin that fails to import is recorded in
        :attr:`failures` (and logged) and the others still load."""
        env = os.environ if environ is None else environ
        blocked = {n.strip() for n in env.get(DISABLE_ENV, "").split(",") if n.strip()}
        for ep in sorted(
            importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
        ):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in blocked:
                self.blocked.append(ep.name)
                continue
            if self._pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                # Recorded, not logged here: `streamer run` logs it, `streamer plugins` shows it.
                self.failures.append(PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            self.register(plugin, ep.name, distribution=dist, version=version)

    def register(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register a plugin object in-process (tests, embedding). Returns its name."""
        registered = self._pm.register(plugin, name)
        if registered is None:
            raise PluginError(f"plugin {name!r} is already registered")
        self._dists[registered] = (distribution, version)
        self._types = None
        return registered

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._dists.pop(name, None)
        self._types = None

    # -- typed facade ----------------------------------------------------------------------

    def _collect(self) -> dict[str, dict[str, TypeSpec]]:
        if self._types is not None:
            return self._types
        types: dict[str, dict[str, TypeSpec]] = {"source": {}, "transform": {}, "sink": {}}
        hooks = {
            "source": self._pm.hook.streamer_register_sources,
            "transform": self._pm.hook.streamer_register_transforms,
            "sink": self._pm.hook.streamer_register_sinks,
        }
        for kind, hook in hooks.items():
            for impl in hook.get_hookimpls():

                def register(
                    type_name: str,
                    config_class: type,
                    factory: Factory,
                    _kind: str = kind,
                    _plugin: str = impl.plugin_name,
                ) -> None:
                    if not attrs.has(config_class):
                        raise PluginError(
                            f"plugin {_plugin!r}: config class for {_kind} {type_name!r} "
                            "must be an attrs class"
                        )
                    known = types[_kind].get(type_name)
                    if known is not None:
                        raise PluginError(
                            f"{_kind} type {type_name!r} is registered by both "
                            f"{known.plugin!r} and {_plugin!r}"
                        )
                    types[_kind][type_name] = TypeSpec(
                        _kind, type_name, config_class, factory, _plugin
                    )

                impl.function(register=register)
        self._types = types
        return types

    def sources(self) -> dict[str, TypeSpec]:
        return self._collect()["source"]

    def transforms(self) -> dict[str, TypeSpec]:
        return self._collect()["transform"]

    def sinks(self) -> dict[str, TypeSpec]:
        return self._collect()["sink"]

    def types_of(self, kind: str) -> dict[str, TypeSpec]:
        return self._collect()[kind]

    def commands(self) -> dict[str, CommandSpec]:
        commands: dict[str, CommandSpec] = {}
        for impl in self._pm.hook.streamer_register_commands.get_hookimpls():

            def register(
                name: str,
                help: str,
                configure: Callable[[argparse.ArgumentParser], None],
                main: Callable[[argparse.Namespace], int],
                _plugin: str = impl.plugin_name,
            ) -> None:
                if name in commands:
                    raise PluginError(
                        f"command {name!r} is registered by both "
                        f"{commands[name].plugin!r} and {_plugin!r}"
                    )
                commands[name] = CommandSpec(name, help, configure, main, _plugin)

            impl.function(register=register)
        return commands

    def event_transformers(self) -> list[Callable[[Event, str], Any]]:
        """Implementations of ``streamer_transform_event`` in call order (empty: free)."""
        impls = self._pm.hook.streamer_transform_event.get_hookimpls()
        # pluggy calls the last registered first; keep that order for chaining.
        return [impl.function for impl in reversed(impls)]

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and the types it adds."""
        collected = self._collect()
        commands = self.commands()
        infos = []
        for name, _plugin in sorted(self._pm.list_name_plugin(), key=lambda p: str(p[0])):
            dist, version = self._dists.get(name, (None, None))
            types: list[str] = []
            for kind in ("source", "transform", "sink"):
                types += [f"{kind}:{t}" for t, s in collected[kind].items() if s.plugin == name]
            types += [f"command:{c}" for c, s in commands.items() if s.plugin == name]
            infos.append(PluginInfo(name, dist, version, tuple(types)))
        return infos

    def plugin_names(self) -> Iterable[str]:
        return [name for name, _ in self._pm.list_name_plugin()]


def load_plugin_manager(environ: dict[str, str] | None = None) -> PluginManager:
    """A manager with every installed plugin loaded."""
    pm = PluginManager()
    pm.load_entry_points(environ)
    return pm
