"""Sink ``myplugin.jsonl``: append every batch, in the wire format, to a JSON-lines file."""

from __future__ import annotations

import attrs
import trio

from streamer import Context, Inbox, hookimpl
from streamer.wire import render_bytes


@attrs.define
class JsonlConfig:
    path: str = "events.jsonl"


class JsonlSink:
    def __init__(self, config: JsonlConfig, context: Context) -> None:
        self.config = config
        self.context = context

    async def run(self, inbox: Inbox, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with await trio.open_file(self.config.path, "ab") as f:
            task_status.started()
            while events := await inbox.get():  # [] means: shutting down, all drained
                await f.write(b"".join(line + b"\n" for line in render_bytes(events)))
                self.context.metrics.inc("written", len(events))


@hookimpl
def streamer_register_sinks(register) -> None:
    register("myplugin.jsonl", JsonlConfig, JsonlSink)
