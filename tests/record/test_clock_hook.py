"""The core's clock hook: a source's ``trio_clock`` drives trio, its ``wall_offset`` the wall."""

from __future__ import annotations

import attrs
import pytest
import trio

from streamer import clock, hookimpl
from streamer._config import load_config_text
from streamer._runtime import Pipeline


class OffsetClock(trio.abc.Clock):
    """Virtual time that jumps to the next deadline whenever trio would sleep."""

    wall_offset = 1_700_000_000.0

    def __init__(self) -> None:
        self.now = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        if deadline == float("inf"):
            return 3600.0
        self.now = max(self.now, deadline)
        return 0.0


@attrs.define
class DrivingConfig:
    pass


class DrivingSource:
    def __init__(self, config, context) -> None:
        self.trio_clock = OffsetClock()
        self.seen: list[int] = []

    async def run(self, emit, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.seen.append(clock.now_ms())
        await trio.sleep(60)
        self.seen.append(clock.now_ms())


class DrivingPlugin:
    @staticmethod
    @hookimpl
    def streamer_register_sources(register) -> None:
        register("test.driving", DrivingConfig, DrivingSource)


def _pipeline(plugin_manager, register_plugin, n: int) -> Pipeline:
    register_plugin(DrivingPlugin(), "driving")
    toml = "".join(f'[[sources]]\nname = "s{i}"\ntype = "test.driving"\n' for i in range(n))
    toml += '[[sinks]]\ntype = "testing.collect"\n'
    return Pipeline(load_config_text(toml, plugin_manager, filename="t.toml", environ={}),
                    plugin_manager)


def test_the_source_clock_sets_the_wall_time(plugin_manager, register_plugin):
    pipeline = _pipeline(plugin_manager, register_plugin, 1)
    trio_clock = pipeline.trio_clock()
    assert isinstance(trio_clock, OffsetClock)
    trio.run(pipeline.run, clock=trio_clock)
    start, end = pipeline.node("s0").seen
    assert start == 1_700_000_000_000  # trio time 0 is the clock's wall_offset
    assert end == start + 60_000  # and the wall clock follows trio's (virtual) time


def test_two_sources_driving_the_clock_is_an_error(plugin_manager, register_plugin):
    pipeline = _pipeline(plugin_manager, register_plugin, 2)
    with pytest.raises(ValueError, match="only one may"):
        pipeline.trio_clock()


async def test_without_a_driving_source_the_clock_is_trio_s(plugin_manager):
    toml = '[[sources]]\ntype = "testing.scripted"\n[[sinks]]\ntype = "testing.collect"\n'
    pipeline = Pipeline(load_config_text(toml, plugin_manager, filename="t.toml", environ={}),
                        plugin_manager)
    assert pipeline.trio_clock() is None
