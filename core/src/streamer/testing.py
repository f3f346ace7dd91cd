"""Test helpers for plugin authors, loaded by pytest as the ``streamer`` plugin.

Fixtures:

- ``plugin_manager``: a :class:`~streamer._plugins.PluginManager` with every installed plugin
  loaded plus the test types below (``testing.scripted`` source, ``testing.collect`` sink).
- ``register_plugin(obj, name=None)``: registers a plugin object (a module or any object with
  ``@hookimpl`` methods) into ``plugin_manager`` for one test and unregisters it afterwards.

Helpers: :func:`running_pipeline` builds a pipeline from TOML text and runs it for the body
of an ``async with``; :func:`config_errors` lists what ``streamer check`` would refuse in TOML
text; :class:`ScriptedSource` emits the batches a test pushes; :class:`CollectingSink` keeps
what it receives.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from streamer._api import Context, Emit, StreamGap
from streamer._config import ConfigError, load_config_text
from streamer._events import Event
from streamer._hookspecs import RegisterSource, RegisterType, hookimpl
from streamer._inbox import Inbox
from streamer._plugins import PluginManager, load_plugin_manager
from streamer._runtime import Pipeline


@attrs.define
class ScriptedSourceConfig:
    #: Return from ``run`` once :meth:`ScriptedSource.finish` was called and all was emitted.
    end_when_done: bool = True


class ScriptedSource:
    """A source whose batches come from the test: ``push(batch)`` (and ``push_gap(gap)``,
    sent through ``emit.gap``), then ``finish()``."""

    def __init__(self, config: ScriptedSourceConfig | None = None,
                 context: Context | None = None) -> None:
        self.config = config or ScriptedSourceConfig()
        self.context = context
        self._send, self._receive = trio.open_memory_channel[list[Event] | StreamGap](math.inf)
        self.emitted = 0

    def push(self, batch: Iterable[Event]) -> None:
        self._send.send_nowait(list(batch))

    def push_gap(self, gap: StreamGap) -> None:
        self._send.send_nowait(gap)

    def finish(self) -> None:
        self._send.close()

    async def run(
        self, emit: Emit, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for item in self._receive:
            if isinstance(item, StreamGap):
                await emit.gap(item)
                continue
            await emit(item)
            self.emitted += len(item)
        if not self.config.end_when_done:
            await trio.sleep_forever()


@attrs.define
class CollectingSinkConfig:
    #: Seconds to sleep after each ``inbox.get()`` (a slow sink).
    delay: float = 0.0
    #: Raise ``RuntimeError`` on the first N deliveries (a failing sink, to test restarts).
    fail_times: int = 0


class CollectingSink:
    """A sink that keeps every event it receives, in order, in :attr:`events`."""

    def __init__(self, config: CollectingSinkConfig | None = None,
                 context: Context | None = None) -> None:
        self.config = config or CollectingSinkConfig()
        self.context = context
        self.events: list[Event] = []
        self.deliveries = 0
        self.runs = 0
        self.flushed = False
        self._changed = trio.Event()

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.runs += 1
        task_status.started()
        while events := await inbox.get():
            self.deliveries += 1
            if self.deliveries <= self.config.fail_times:
                raise RuntimeError(f"failing on purpose ({self.deliveries})")
            if self.config.delay:
                await trio.sleep(self.config.delay)
            self.events.extend(events)
            self._changed.set()
            self._changed = trio.Event()
        self.flushed = True

    async def wait_for(self, predicate: Callable[[list[Event]], bool] | int) -> list[Event]:
        """Wait until ``predicate(events)`` holds (or ``len(events) >= n`` for an int)."""
        check = (lambda ev: len(ev) >= predicate) if isinstance(predicate, int) else predicate
        while not check(self.events):
            await self._changed.wait()
        return self.events


class TestingPlugin:
    """Registers ``testing.scripted``, ``testing.stored`` (the same source declared not live,
    as a replay is) and ``testing.collect``."""

    @staticmethod
    @hookimpl
    def streamer_register_sources(register: RegisterSource) -> None:
        register("testing.scripted", ScriptedSourceConfig, ScriptedSource)
        register("testing.stored", ScriptedSourceConfig, ScriptedSource, live=False)

    @staticmethod
    @hookimpl
    def streamer_register_sinks(register: RegisterType) -> None:
        register("testing.collect", CollectingSinkConfig, CollectingSink)


@asynccontextmanager
async def running_pipeline(
    toml: str, pm: PluginManager, *, environ: Mapping[str, str] | None = None
) -> AsyncIterator[Pipeline]:
    """Run the pipeline described by ``toml`` for the body; shut it down gracefully after."""
    config = load_config_text(toml, pm, filename="test.toml", environ=environ or {})
    pipeline = Pipeline(config, pm)
    async with trio.open_nursery() as nursery:
        await nursery.start(pipeline.run)
        try:
            yield pipeline
        finally:
            pipeline.shutdown()


def config_errors(toml: str, pm: PluginManager, *,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Every error ``streamer check`` would report for ``toml`` (file name ``s.toml``), one
    line each as printed (``s.toml: sinks[0].port: expected ..., got ...``); ``[]`` if valid."""
    try:
        load_config_text(toml, pm, filename="s.toml", environ=environ or {})
    except ConfigError as exc:
        return exc.errors
    return []


@pytest.fixture
def plugin_manager() -> PluginManager:
    pm = load_plugin_manager(environ={})
    pm.register(TestingPlugin(), "testing")
    return pm


@pytest.fixture
def register_plugin(plugin_manager: PluginManager) -> Iterator[Callable[..., str]]:
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = plugin_manager.register(plugin, name)
        names.append(registered)
        return registered

    yield register
    for name in reversed(names):
        plugin_manager.unregister(name)


__all__ = [
    "CollectingSink",
    "CollectingSinkConfig",
    "ScriptedSource",
    "ScriptedSourceConfig",
    "TestingPlugin",
    "config_errors",
    "running_pipeline",
]

