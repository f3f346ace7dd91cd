"""Write events to stdout: wire-format JSON lines (``| jq`` friendly) or a human table.

Logs never go to stdout (the core sends them to stderr or a file), so the output stays pure.
Writes happen in a worker thread, one hop per drained inbox rather than per event, so a slow
terminal or pipe reader delays this sink only, never the pipeline.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO, Literal

import attrs
import trio

from streamer import Context, Event, Inbox
from streamer.wire import encode, render


@attrs.define
class ConsoleConfig:
    #: "json": one wire envelope per line; "pretty": a compact aligned line per event.
    format: Literal["json", "pretty"] = "json"
    #: "stdout" or "stderr".
    stream: Literal["stdout", "stderr"] = "stdout"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def pretty_lines(events: list[Event]) -> list[str]:
    """One short human line per event."""
    lines = []
    for env in render(events):
        prefix = f"{env['channel']:<6} {env['data_type']:<7}"
        for item in env["data"]:
            if env["data_type"] == "klines":
                state = "closed" if item.get("closed") else "open  "
                body = (
                    f"{item['symbol']:<14} {item['interval'] // 1000:>7}s {item['timestamp']} "
                    f"{state} O {_num(item['open'])} H {_num(item['high'])} "
                    f"L {_num(item['low'])} C {_num(item['close'])} "
                    f"V {_num(item['volume'])} n {item['trade_count']}"
                )
            elif env["data_type"] == "trades":
                body = f"{item['s']:<14} {item['T']} {item['S']:<4} {item['v']} @ {item['p']}"
            elif env["data_type"] == "price":
                body = f"{item['symbol']:<14} {item['timestamp']} {_num(item['price'])}"
            else:
                body = f"{item.get('symbol', ''):<14} last {item.get('lastPrice', '')} " + (
                    f"mark {item['markPrice']}" if "markPrice" in item else ""
                )
            lines.append(f"{prefix} {body}")
    return lines


class ConsoleSink:
    def __init__(self, config: ConsoleConfig, context: Context) -> None:
        self.config = config
        self.context = context

    def _out(self) -> BinaryIO:
        return sys.stdout.buffer if self.config.stream == "stdout" else sys.stderr.buffer

    def _format(self, events: list[Event]) -> bytes:
        if self.config.format == "json":
            return b"".join(encode(env) + b"\n" for env in render(events))
        return "".join(line + "\n" for line in pretty_lines(events)).encode()

    async def run(
        self, inbox: Inbox, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        out = self._out()

        def write(data: bytes) -> None:
            out.write(data)
            out.flush()

        stream = self.config.stream
        self.context.health.set(stream, True)
        task_status.started()
        while events := await inbox.get():
            data = self._format(events)
            try:
                await trio.to_thread.run_sync(write, data)
            except BrokenPipeError:
                # `streamer run | head` closed the pipe: nothing more to print.
                self.context.logger.warning("stdout closed; console sink stops writing")
                self.context.health.set(stream, False, f"{stream} closed")
                return
            self.context.metrics.inc("written_events", len(events))
