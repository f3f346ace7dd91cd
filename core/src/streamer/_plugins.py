"""Plugin discovery and the typed facade over pluggy.

Everything outside this module asks :class:`PluginManager` for what plugins registered; no
other module touches ``pm.hook``. Built-in plugins are found exactly like third-party ones:
through the ``streamer.plugins`` entry-point group of installed distributions.

Hooks are called through pluggy (``pm.hook.<name>(...)``, per plugin where the result must be
attributed to it), and every plugin is checked against the hook specifications when it is
registered: a misspelt hook name or an argument that no spec has is a :class:`PluginError` at
start, not a ``TypeError`` on every batch.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING, Any, Literal

import attrs
import pluggy

from streamer import _hookspecs as hookspecs
from streamer._api import CONFIG_CAPABILITIES, Factory, check_capabilities

if TYPE_CHECKING:
    from streamer._events import Event

ENTRY_POINT_GROUP = "streamer.plugins"
DISABLE_ENV = "STREAMER_DISABLE_PLUGINS"

#: What a pipeline node is: every type a plugin registers is one of these.
NodeKind = Literal["source", "transform", "sink"]


class PluginError(Exception):
    """Two plugins claim the same type, or a plugin registered something malformed."""


@attrs.define(frozen=True)
class TypeSpec:
    """A source, transform or sink type as a plugin registered it."""

    kind: NodeKind
    type_name: str
    config_class: type
    factory: Factory
    plugin: str
    #: Sources only: declared with ``register(..., live=False)`` when the source reads stored
    #: data at its own pace (see ``streamer_register_sources``).
    live: bool = True


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
            try:
                self.register(plugin, ep.name, distribution=dist, version=version)
            except PluginError as exc:
                self.failures.append(PluginFailure(ep.name, dist, str(exc)))

    def register(
        self,
        plugin: object,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register a plugin object in-process (tests, embedding). Returns its name."""
        try:
            registered = self._pm.register(plugin, name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from None
        if registered is None:
            raise PluginError(f"plugin {name!r} is already registered")
        try:
            self._check_hook_names(registered)
        except PluginError:
            self._pm.unregister(name=registered)
            raise
        self._dists[registered] = (distribution, version)
        self._types = None
        return registered

    def _check_hook_names(self, name: str) -> None:
        """pluggy's ``check_pending`` for one plugin, with the hook's correct names in the
        message: a ``streamer_*`` function marked ``@hookimpl`` that matches no spec."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            known = ", ".join(hookspecs.HOOK_NAMES)
            raise PluginError(
                f"plugin {name!r}: {exc}; the streamer hooks are: {known}"
            ) from None

    def unregister(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._dists.pop(name, None)
        self._types = None

    # -- typed facade ----------------------------------------------------------------------

    def _collect(self) -> dict[str, dict[str, TypeSpec]]:
        if self._types is not None:
            return self._types
        types: dict[str, dict[str, TypeSpec]] = {"source": {}, "transform": {}, "sink": {}}
        hook_names: dict[NodeKind, str] = {
            "source": "streamer_register_sources",
            "transform": "streamer_register_transforms",
            "sink": "streamer_register_sinks",
        }
        for kind, hook_name in hook_names.items():
            for plugin_name in self._implementers(hook_name):

                def register(
                    type_name: str,
                    config_class: type,
                    factory: Factory,
                    _kind: NodeKind = kind,
                    _plugin: str = plugin_name,
                    *,
                    live: bool = True,
                ) -> None:
                    if not isinstance(live, bool):
                        raise PluginError(
                            f"plugin {_plugin!r}: {_kind} {type_name!r}: live must be True "
                            f"or False, got {live!r}"
                        )
                    if _kind != "source" and not live:
                        raise PluginError(
                            f"plugin {_plugin!r}: live= is declared by sources only, not by "
                            f"{_kind} {type_name!r}"
                        )
                    if not attrs.has(config_class):
                        raise PluginError(
                            f"plugin {_plugin!r}: config class for {_kind} {type_name!r} "
                            "must be an attrs class"
                        )
                    try:
                        check_capabilities(config_class, CONFIG_CAPABILITIES[_kind])
                    except TypeError as exc:
                        raise PluginError(f"plugin {_plugin!r}: config class for {_kind} "
                                          f"{type_name!r}: {exc}") from None
                    known = types[_kind].get(type_name)
                    if known is not None:
                        raise PluginError(
                            f"{_kind} type {type_name!r} is registered by both "
                            f"{known.plugin!r} and {_plugin!r}"
                        )
                    types[_kind][type_name] = TypeSpec(
                        _kind, type_name, config_class, factory, _plugin, live
                    )

                self._hook_of(plugin_name, hook_name)(register=register)
        self._types = types
        return types

    def sources(self) -> dict[str, TypeSpec]:
        return self._collect()["source"]

    def transforms(self) -> dict[str, TypeSpec]:
        return self._collect()["transform"]

    def sinks(self) -> dict[str, TypeSpec]:
        return self._collect()["sink"]

    def types_of(self, kind: NodeKind) -> dict[str, TypeSpec]:
        return self._collect()[kind]

    def commands(self) -> dict[str, CommandSpec]:
        commands: dict[str, CommandSpec] = {}
        for plugin_name in self._implementers("streamer_register_commands"):

            def register(
                name: str,
                help: str,
                configure: Callable[[argparse.ArgumentParser], None],
                main: Callable[[argparse.Namespace], int],
                _plugin: str = plugin_name,
            ) -> None:
                if name in commands:
                    raise PluginError(
                        f"command {name!r} is registered by both "
                        f"{commands[name].plugin!r} and {_plugin!r}"
                    )
                commands[name] = CommandSpec(name, help, configure, main, _plugin)

            self._hook_of(plugin_name, "streamer_register_commands")(register=register)
        return commands

    def event_transformers(self) -> list[Callable[[Event, str], Any]]:
        """Implementations of ``streamer_transform_event`` in call order (empty: free)."""
        impls = self._pm.hook.streamer_transform_event.get_hookimpls()
        # A deliberate exception to calling through pm.hook: this hook runs once per event and
        # plugin on the ingest task, and pluggy's call machinery would multiply its cost. The
        # implementations were validated against the spec at registration; one that takes
        # fewer arguments (pluggy allows it) is called with just those.
        # pluggy calls the last registered first; keep that order for chaining.
        return [_positional(impl.function, impl.argnames) for impl in reversed(impls)]

    def environment_warnings(self, environ: Mapping[str, str],
                             read: Set[str]) -> list[str]:
        """What the ``streamer_environment_warnings`` implementations say about ``environ``,
        in call order; one that raises is named in a warning of its own, the others still
        speak."""
        out: list[str] = []
        for plugin_name in self._implementers("streamer_environment_warnings"):
            hook = self._hook_of(plugin_name, "streamer_environment_warnings")
            try:
                for said in hook(environ=environ, read=frozenset(read)):
                    if not (isinstance(said, list) and all(isinstance(s, str) for s in said)):
                        raise TypeError(f"expected a list of str, got {said!r}")
                    out.extend(said)
            except Exception as exc:
                out.append(f"plugin {plugin_name!r}: streamer_environment_warnings failed: "
                           f"{type(exc).__name__}: {exc}")
        return out

    def plugins(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and the types it adds."""
        collected = self._collect()
        commands = self.commands()
        infos = []
        for name, _plugin in sorted(self._pm.list_name_plugin(), key=lambda p: str(p[0])):
            dist, version = self._dists.get(name, (None, None))
            types: list[str] = []
            for kind in ("source", "transform", "sink"):
                types += [f"{kind}:{t}" + ("" if s.live else " (not live: reads stored data)")
                          for t, s in collected[kind].items() if s.plugin == name]
            types += [f"command:{c}" for c, s in commands.items() if s.plugin == name]
            infos.append(PluginInfo(name, dist, version, tuple(types)))
        return infos

    def _implementers(self, hook_name: str) -> list[str]:
        """Names of the plugins implementing ``hook_name``, in pluggy's call order."""
        hook = getattr(self._pm.hook, hook_name)
        return [impl.plugin_name for impl in reversed(hook.get_hookimpls())]

    def _hook_of(self, plugin_name: str, hook_name: str) -> Callable[..., Any]:
        """``pm.hook.<hook_name>`` restricted to one plugin, so what it registers is its own."""
        others = [p for n, p in self._pm.list_name_plugin() if n != plugin_name]
        return self._pm.subset_hook_caller(hook_name, remove_plugins=others)



def _positional(
    function: Callable[..., Any], argnames: tuple[str, ...]
) -> Callable[[Event, str], Any]:
    """``function`` callable as ``f(event, source)`` whatever subset of the spec it declares."""
    if argnames == ("event", "source"):
        return function
    if argnames == ("event",):
        def call(event: Event, source: str) -> Any:
            return function(event)
    else:
        def call(event: Event, source: str) -> Any:
            given = {"event": event, "source": source}
            return function(**{name: given[name] for name in argnames})

    return functools.update_wrapper(call, function)  # its name, for the failure log line


def load_plugin_manager(environ: dict[str, str] | None = None) -> PluginManager:
    """A manager with every installed plugin loaded."""
    pm = PluginManager()
    pm.load_entry_points(environ)
    return pm
