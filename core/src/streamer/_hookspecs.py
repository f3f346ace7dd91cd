"""The hooks a streamer plugin can implement. Each docstring is the reference documentation
(docs/plugin_hooks.md is generated from it and a test keeps the two in step).

A plugin is a module (or object) with functions decorated by :data:`streamer.hookimpl`,
published under the entry-point group ``streamer.plugins``::

    [project.entry-points."streamer.plugins"]
    myplugin = "streamer_myplugin"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    import argparse

    from streamer._api import Factory
    from streamer._events import Event

PROJECT = "streamer"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class RegisterType(Protocol):
    """``register(type_name, config_class, factory)``, handed to the ``register_*`` hooks."""

    def __call__(self, type_name: str, config_class: type, factory: Factory) -> None: ...


class RegisterSource(Protocol):
    """``register(type_name, config_class, factory, *, live=True)``, handed to
    ``streamer_register_sources``: :class:`RegisterType` plus what the source declares."""

    def __call__(
        self, type_name: str, config_class: type, factory: Factory, *, live: bool = True
    ) -> None: ...


class RegisterCommand(Protocol):
    """``register(name, help, configure, main)``, handed to ``streamer_register_commands``."""

    def __call__(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        main: Callable[[argparse.Namespace], int],
    ) -> None: ...


@hookspec
def streamer_register_sources(register: RegisterSource) -> None:
    """Add source types.

    Call ``register(type_name, config_class, factory, *, live=True)`` once per type:

    - ``type_name``: what ``type = "..."`` in a ``[[sources]]`` table selects, dotted by
      convention (``"bybit.linear"``). Two plugins registering the same name is an error.
    - ``config_class``: an ``attrs`` class holding the type's own options. The table's keys
      other than ``name``, ``type`` and ``inputs`` are structured into it by cattrs; unknown
      keys are rejected and type errors are reported with the file and dotted path. Give
      every field a default where one makes sense.
    - ``factory(config, context)``: returns an object with
      ``async def run(self, emit, *, task_status=trio.TASK_STATUS_IGNORED)``
      (:class:`streamer.Source`). ``context`` is a :class:`streamer.Context`.
    - ``live``: whether the source follows data as it happens, with a deadline: what it does
      not read in time is lost upstream (an exchange's WebSocket, which disconnects a reader
      that falls behind). Declare ``live=False`` for a source that reads stored data at its
      own pace (a capture file, a JetStream stream it acknowledges): when no source of a
      pipeline is live, every sink whose table does not set ``overflow`` blocks when full
      instead of taking its type's default (the console's ``drop_oldest``), so a replay at
      any speed into any sink loses nothing. ``streamer plugins`` shows it. Each node sees
      whether a live source feeds it in :attr:`streamer.Context.live_input`: a sink with a
      buffer of its own (redis, storage, nats) waits for room in it when none does.

    ``run`` calls ``task_status.started()`` once connected and then ``await emit(batch)`` for
    every batch (a non-empty ``list`` of events, one per socket read or exchange message).
    A source that can lose part of its stream (a dropped connection) reports it with
    ``await emit.gap(StreamGap(...))`` when it happens and again when it has recovered, so
    transforms can wait for the recovered data (:class:`streamer.StreamGap`).
    """


@hookspec
def streamer_register_transforms(register: RegisterType) -> None:
    """Add transform types (``[[transforms]]`` tables), e.g. trades -> klines.

    Same ``register(type_name, config_class, factory)`` contract as
    :func:`streamer_register_sources`. The factory returns a :class:`streamer.Transform`:
    ``process(batch) -> list[Event]`` is called inline for every batch of its inputs and must
    not block; ``async run(emit, *, task_status)`` hosts timers and emits what they produce.
    An optional ``on_gap(gap) -> list[Event]`` hears of stream gaps reported by its input
    sources (called inline, like ``process``).
    """


@hookspec
def streamer_register_sinks(register: RegisterType) -> None:
    """Add sink types (``[[sinks]]`` tables): Redis, a WebSocket server, the console, ...

    Same ``register(type_name, config_class, factory)`` contract as
    :func:`streamer_register_sources`. The factory returns a :class:`streamer.Sink`:
    ``async run(inbox, *, task_status)`` reports readiness, then drains
    ``await inbox.get()`` (every queued event at once) until it returns ``[]`` at shutdown,
    flushes and returns. The core owns the inbox: ``queue_size`` and ``overflow`` in the sink's
    table set its bound and policy, the sink's own options go to ``config_class``.
    Render with :func:`streamer.wire.render` so every sink speaks the same wire format.
    """


@hookspec
def streamer_register_commands(register: RegisterCommand) -> None:
    """Add ``streamer`` sub-commands (e.g. ``streamer tail`` from the websocket plugin).

    ``register(name, help, configure, main)``: ``configure(parser)`` adds arguments to the
    sub-command's ``argparse`` parser; ``main(args)`` runs it and returns the exit status.
    ``help`` is shown by ``streamer --help``; ``configure`` is called only when the command
    is the one chosen, so the command's module can be imported there and in ``main``, not
    by the module that registers (``streamer check`` and ``run`` then never load it).
    """


@hookspec
def streamer_transform_event(event: Event, source: str) -> Event | None:
    """Rewrite or drop single events, written as a plain function.

    Called for every event of every source (``source`` is the source's name) before anything
    else sees it. Return ``None`` to keep the event as it is, a new event to replace it, or
    :data:`streamer.DROP` to drop it. When several plugins implement it, they are chained in
    pluggy's call order. A hook that raises leaves that event as it was (the chain and the
    batch go on), counted in the source's ``hook_failures`` and logged once per hook and
    exception type.

    Cost: one Python call per event and plugin, about 0.3-1 us each, paid on the ingest task;
    at 100k events/s that is up to a tenth of a core. Pipelines where no plugin implements
    this hook pay nothing. For heavy work write a transform type instead: it sees whole
    batches.
    """


@hookspec
def streamer_environment_warnings(environ: Mapping[str, str], read: Set[str]) -> list[str]:
    """Warn about the environment ``streamer run`` starts in: variables a plugin recognises
    that nothing will read (an older program's settings, say, which the pipeline file
    replaces).

    Called once by ``streamer run``, after the configuration is loaded and logging set up,
    before the pipeline is built, whatever the pipeline holds. ``environ`` is the process
    environment; ``read`` the names of the variables the pipeline reads through its
    ``*_env`` options, which are not ignored. Return the warnings, one line each; each is
    logged once (logger ``streamer.cli``). The bybit plugin names the older streamer's
    ``.env`` variables this way.
    """
    return []  # a spec's body never runs; this keeps its return type honest


HOOK_NAMES: tuple[str, ...] = (
    "streamer_register_sources",
    "streamer_register_transforms",
    "streamer_register_sinks",
    "streamer_register_commands",
    "streamer_transform_event",
    "streamer_environment_warnings",
)

__all__ = ["HOOK_NAMES", "RegisterCommand", "RegisterSource", "RegisterType", "hookimpl",
           "hookspec"]

