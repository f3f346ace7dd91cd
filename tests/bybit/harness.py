"""Helpers of the Bybit source tests: a collecting ``emit`` and a source factory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from streamer._api import Context, StreamGap
from streamer._events import Event
from streamer._metrics import Metrics
from streamer_bybit.config import BybitInverseConfig, BybitOptionConfig
from streamer_bybit.source import BybitLinearConfig, BybitSource, BybitSpotConfig

CONFIG_CLASSES: dict[str, Any] = {"linear": BybitLinearConfig, "spot": BybitSpotConfig,
                                  "inverse": BybitInverseConfig, "option": BybitOptionConfig}


class Collector:
    """An ``emit`` that keeps every batch and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.gaps: list[StreamGap] = []
        #: How many events had been emitted when each gap was reported.
        self.gap_positions: list[int] = []
        self._lot = trio.lowlevel.ParkingLot()

    async def __call__(self, batch: list[Event]) -> None:
        assert batch, "emit must never be called with an empty batch"
        self.batches.append(batch)
        self._lot.unpark_all()

    async def gap(self, gap: StreamGap) -> None:
        self.gaps.append(gap)
        self.gap_positions.append(len(self.events))
        self._lot.unpark_all()

    @property
    def events(self) -> list[Event]:
        return [e for b in self.batches for e in b]

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, predicate: Callable[[list[Event]], bool]) -> list[Event]:
        while not predicate(self.events):
            await self._lot.park()
        return self.events


def make_source(
    fake: Any, category: str = "linear", name: str = "bybit", **options: Any
) -> BybitSource:
    config_class = CONFIG_CLASSES[category]
    options.setdefault("url", fake.ws_url(category))
    options.setdefault("rest_url", fake.rest_url)
    config = config_class(**options)
    context = Context(
        name=name,
        type=f"bybit.{category}",
        logger=logging.getLogger(f"test.{name}"),
        metrics=Metrics(),
    )
    return BybitSource(config, context, category)


async def run_source(nursery: trio.Nursery, source: BybitSource, collector: Collector) -> None:
    """Start ``source`` in ``nursery`` and wait until every connection is subscribed."""
    await nursery.start(source.run, collector)
