"""SIGTERM ends ``streamer run`` even when a sink is blocked where cancellation cannot reach:
a worker thread started without ``abandon_on_cancel`` (an hour-long blocking call). The run
gives the sinks ``shutdown_timeout``, then a short grace, then exits with status 3 naming the
sink it could not wait for, after the run's ``final`` and ``events lost`` lines (what the
stuck sink took is counted). A real subprocess running the real ``streamer run`` code path
with a test plugin registered in it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from faults.procs import wait_for_log

SCRIPT = '''
import argparse, sys, time
import attrs, trio
from streamer import Trade, hookimpl
from streamer._cli import cmd_run
from streamer._plugins import load_plugin_manager


@attrs.define
class NoOptions:
    pass


class OneTrade:
    def __init__(self, config, context):
        pass

    async def run(self, emit, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await emit([Trade("linear", "BTCUSDT", 1, "Buy", "1", "1", "1")])
        await trio.sleep_forever()


class Uncancellable:
    def __init__(self, config, context):
        pass

    async def run(self, inbox, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        await inbox.get()
        print("sink entering the uncancellable call", file=sys.stderr, flush=True)
        await trio.to_thread.run_sync(time.sleep, 3600)  # cancellation cannot reach it


class Plugin:
    @staticmethod
    @hookimpl
    def streamer_register_sources(register):
        register("test.one_trade", NoOptions, OneTrade)

    @staticmethod
    @hookimpl
    def streamer_register_sinks(register):
        register("test.uncancellable", NoOptions, Uncancellable)


pm = load_plugin_manager()
pm.register(Plugin(), "test-uncancellable")
sys.exit(cmd_run(argparse.Namespace(config=sys.argv[1], log_level=None), pm))
'''

CONFIG = """
[streamer]
shutdown_timeout = 1

[[sources]]
name = "src"
type = "test.one_trade"

[[sinks]]
name = "stuck"
type = "test.uncancellable"
"""


def test_sigterm_ends_the_run_when_a_sink_ignores_cancellation(tmp_path: Path) -> None:
    script, config, log_path = tmp_path / "run.py", tmp_path / "s.toml", tmp_path / "log"
    script.write_text(SCRIPT)
    config.write_text(CONFIG)
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(config)],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_log(log_path, "sink entering the uncancellable call", proc, timeout=30)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)  # a hang, not a speed check
        except subprocess.TimeoutExpired:
            raise AssertionError("SIGTERM did not end the run within 30 s:\n"
                                 + log_path.read_text(errors="replace")[-3000:]) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    log = log_path.read_text(errors="replace")
    # The process's own hard stop ended it: shutdown_timeout (1 s) + the grace (2 s).
    assert rc == 3, log[-3000:]
    assert "shutdown took longer than 3.0s (sinks still running: stuck); exiting" in log, log
    assert "Traceback" not in log, log
    # Its final lines all the same: the trade the stuck sink took is counted as lost.
    assert "final stuck: 1 msg in, 1 events out, 1 dropped" in log, log
    assert "; lost_at_shutdown=1\n" in log, log
    assert "events lost: 1 in all; stuck lost_at_shutdown=1" in log, log
