"""The ``console`` sink's options: all that registering the plugin and ``streamer check``
import (the sink, with trio and the wire encoder, is imported when the pipeline builds it)."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs


@attrs.define
class ConsoleConfig:
    #: The inbox's overflow unless the table sets one: a terminal or pipe nobody reads must
    #: not stop the other sinks. Set ``overflow = "block"`` to make the pipeline wait instead.
    default_overflow: ClassVar[str] = "drop_oldest"

    #: "json": one wire envelope per line; "pretty": a compact aligned line per event.
    format: Literal["json", "pretty"] = "json"
    #: "stdout" or "stderr".
    stream: Literal["stdout", "stderr"] = "stdout"
