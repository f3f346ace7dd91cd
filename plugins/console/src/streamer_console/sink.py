"""Write events to stdout: wire-format JSON lines (``| jq`` friendly) or a human table.

Logs never go to stdout (the core sends them to stderr or a file), so the output stays pure.
Writes happen in a worker thread, one hop per drained inbox rather than per event, so a slow
terminal or pipe reader delays this sink only, never the pipeline.

A reader that stops reading (``streamer run | sleep 40``) blocks that write for good. Two
things keep it from holding anything else: the inbox defaults to ``overflow = "drop_oldest"``
(the other sinks go on; what the console misses is counted), and the thread writes to the raw
file descriptor and is abandoned when the sink is cancelled at the shutdown deadline, so no
lock of ``sys.stdout`` is held and the process exits on time. The descriptor is left in
blocking mode: it is usually shared with the shell and with stderr, where logs go.
"""

from __future__ import annotations

import os
import select

import trio

from streamer import Context, Event, Inbox
from streamer.pretty import envelope_lines
from streamer.wire import encode, render
from streamer_console.config import ConsoleConfig


def pretty_lines(events: list[Event]) -> list[str]:
    """One short human line per event (:mod:`streamer.pretty`)."""
    return [line for env in render(events) for line in envelope_lines(env)]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (a pipe takes at most its free space per call), waiting for room
    even if someone else made the descriptor non-blocking."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


class ConsoleSink:
    def __init__(self, config: ConsoleConfig, context: Context) -> None:
        self.config = config
        self.context = context
        #: What the sink is blocked in, for the runtime's stall report; None when idle.
        self.busy_with: str | None = None

    def _format(self, events: list[Event]) -> bytes:
        if self.config.format == "json":
            return b"".join(encode(env) + b"\n" for env in render(events))
        return "".join(line + "\n" for line in pretty_lines(events)).encode()

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        stream = self.config.stream
        fd = 1 if stream == "stdout" else 2
        self.context.health.set(stream, True)
        task_status.started()
        while events := await inbox.get():
            data = self._format(events)
            self.busy_with = f"a write of {len(data)} bytes to {stream} (is its reader reading?)"
            try:
                await trio.to_thread.run_sync(write_all, fd, data, abandon_on_cancel=True)
            except BrokenPipeError:
                # `streamer run | head` closed the pipe: nothing more to print.
                self.context.logger.warning("%s closed; console sink stops writing", stream)
                self.context.health.set(stream, False, f"{stream} closed")
                return
            finally:
                self.busy_with = None
            self.context.metrics.inc("written_events", len(events))
