"""The ``streamer`` command: ``run``, ``check``, ``plugins`` and plugin sub-commands."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import streamer
from streamer._api import FatalError, HasCheckLines
from streamer._config import ConfigError, PipelineConfig, load_config_file
from streamer._logs import setup_logging
from streamer._plugins import CommandSpec, PluginManager, load_plugin_manager

if TYPE_CHECKING:
    import trio

    from streamer._runtime import Pipeline

# ``run`` imports trio and the runtime when it is chosen: ``check``, ``plugins`` and the
# plugins' commands need neither, and start faster without them.

log = logging.getLogger("streamer.cli")
DEFAULT_CONFIG = "streamer.toml"
#: ``streamer run`` exit statuses besides 0 (clean) and 2 (invalid configuration).
EXIT_FATAL = 1
#: The run ended without a fatal error, but events were lost (counted per sink).
EXIT_LOST = 3
#: Seconds past the sinks' shutdown deadline before ``run`` exits without waiting for a task
#: that cancellation cannot reach (a plugin blocked in a worker thread it cannot abandon).
HARD_STOP_GRACE = 2.0


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"pipeline file (default: ./{DEFAULT_CONFIG})")


def _load(args: argparse.Namespace, pm: PluginManager) -> PipelineConfig | None:
    try:
        return load_config_file(args.config, pm)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        n = len(exc.errors)
        print(f"{n} error{'s' if n != 1 else ''} in {args.config}", file=sys.stderr)
        return None


def cmd_check(args: argparse.Namespace, pm: PluginManager) -> int:
    config = _load(args, pm)
    if config is None:
        return 2
    for node in config.nodes():
        inputs = f" <- {', '.join(node.inputs)}" if node.inputs else ""
        print(f"{node.kind:<9} {node.name} ({node.type}){inputs}")
        # A config class may add lines of its own (e.g. a source's shard of the symbols).
        if isinstance(node.options, HasCheckLines):
            for line in node.options.check_lines():
                print(f"{'':<9} {line}")
    print(f"{args.config}: OK")
    return 0


def cmd_plugins(args: argparse.Namespace, pm: PluginManager) -> int:
    infos = pm.plugins()
    if not infos and not pm.failures:
        print("no plugins installed (entry-point group 'streamer.plugins')")
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(in-process)"
        print(f"{info.name:<12} {dist}")
        for t in info.types:
            print(f"    {t}")
    for name in pm.blocked:
        print(f"{name:<12} blocked by STREAMER_DISABLE_PLUGINS")
    for failure in pm.failures:
        print(f"{failure.name:<12} {failure.distribution or ''} FAILED TO LOAD: {failure.error}")
    return 1 if pm.failures else 0


async def _hard_stop_after(
    seconds: float, pipeline: Pipeline, *, task_status: trio.TaskStatus[trio.CancelScope],
) -> None:
    """Exit the process after ``seconds`` even if a task ignores cancellation, with the run's
    ``final`` and ``events lost`` lines first; shielded so the second signal's cancel does
    not stop it, and cancelled once the pipeline has returned."""
    import trio

    with trio.CancelScope(shield=True) as scope:
        task_status.started(scope)
        await trio.sleep(seconds)
        log.error("shutdown took longer than %.1fs (sinks still running: %s); exiting without "
                  "waiting for them, what they held is lost", seconds,
                  ", ".join(pipeline.running_sinks()) or "none")
        pipeline.report_cut_off()
        logging.shutdown()  # flush the log: os._exit skips it
        os._exit(EXIT_LOST)


async def _run_pipeline(pipeline: Pipeline) -> None:
    import trio

    hard_stops: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                count = 0
                async for signum in signals:
                    count += 1
                    if count == 1:
                        log.info("%s: stopping sources, flushing sinks",
                                 signal.Signals(signum).name)
                        pipeline.shutdown()
                        hard_stops.append(await nursery.start(
                            _hard_stop_after, pipeline.shutdown_timeout() + HARD_STOP_GRACE,
                            pipeline))
                    else:
                        log.warning("second signal: stopping now")
                        nursery.cancel_scope.cancel()

        nursery.start_soon(watch_signals)
        s = pipeline.config.settings
        ops = None
        if s.metrics is not None:
            from streamer._metrics_http import OpsLimits, serve_ops

            ops = await nursery.start(partial(serve_ops, pipeline, s.metrics,
                                              max_data_age=s.ready_max_data_age,
                                              limits=OpsLimits.from_settings(s)))
        try:
            # Not nursery.start: a signal before every source is up ends pipeline.run without
            # it ever reporting started, and that is a normal stop, not an error.
            await pipeline.run(task_status=_ReportStarted(ops))
        finally:
            for scope in hard_stops:
                scope.cancel()
            nursery.cancel_scope.cancel()


class _ReportStarted:
    """The ``task_status`` of ``pipeline.run``: tells the ops listener (if any) that every
    node is up, for /readyz."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops

    def started(self, value: object = None) -> None:
        if self.ops is not None:
            self.ops.pipeline_started = True


def cmd_run(args: argparse.Namespace, pm: PluginManager) -> int:
    import trio

    from streamer._runtime import Pipeline, exception_leaves

    config = _load(args, pm)
    if config is None:
        return 2
    s = config.settings
    setup_logging(args.log_level or s.log_level, s.log_format, s.log_file)
    for warning in pm.environment_warnings(os.environ, config.read_env()):
        log.warning("%s", warning)
    for failure in pm.failures:
        log.error("plugin %r failed to load: %s", failure.name, failure.error)
    try:
        pipeline = Pipeline(config, pm)
        trio_clock = pipeline.trio_clock()
    except Exception as exc:  # a factory refusing its config
        log.error("cannot build the pipeline: %s: %s", type(exc).__name__, exc)
        return 1
    try:
        trio.run(_run_pipeline, pipeline, clock=trio_clock)
    except (Exception, BaseExceptionGroup) as exc:
        leaves = exception_leaves(exc)
        fatal = [e for e in leaves if isinstance(e, FatalError)]
        if fatal:
            log.error("stopped: %s", fatal[0])
            return EXIT_FATAL
        if not all(isinstance(e, KeyboardInterrupt) for e in leaves):
            log.exception("stopped by an unexpected error")
            return EXIT_FATAL
    if pipeline.lost_total():
        return EXIT_LOST
    return 0


def build_parser(
    pm: PluginManager, chosen: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, CommandSpec]]:
    """The parser of every command. A plugin's command adds its arguments (``configure``,
    which may import the command's module) only when it is ``chosen``, or when nothing is
    (every one of them: tests, ``--help`` of the lot): ``streamer check`` loads none."""
    parser = argparse.ArgumentParser(
        prog="streamer", description="Real-time Bybit V5 market data, fanned out to sinks."
    )
    parser.add_argument("--version", action="version", version=f"streamer {streamer.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("run", help="run the pipeline of a streamer.toml")
    _add_config_arg(p)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="override [streamer] log_level")
    p = sub.add_parser("check", help="validate a streamer.toml without connecting anywhere")
    _add_config_arg(p)
    sub.add_parser("plugins", help="list installed plugins and the types they add")
    extra: dict[str, CommandSpec] = {}
    for name, spec in sorted(pm.commands().items()):
        if name in {"run", "check", "plugins"}:
            continue
        p = sub.add_parser(name, help=f"{spec.help} [plugin {spec.plugin}]")
        if chosen is None or name == chosen:
            spec.configure(p)
        extra[name] = spec
    return parser, extra


def chosen_command(argv: Sequence[str]) -> str:
    """The command ``argv`` names: its first word that is not an option (the top-level
    options, ``--help`` and ``--version``, take no value); "" for none."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    pm = load_plugin_manager()
    parser, extra = build_parser(pm, chosen_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "run":
        return cmd_run(args, pm)
    try:
        if args.command == "check":
            return cmd_check(args, pm)
        if args.command == "plugins":
            return cmd_plugins(args, pm)
        spec = extra[args.command]
        return int(spec.main(args))
    except BrokenPipeError:
        # `streamer plugins | head`: the reader has what it wanted. Point stdout at /dev/null
        # so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
