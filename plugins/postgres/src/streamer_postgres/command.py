"""``streamer db migrate -c streamer.toml``: create or update the tables of every ``postgres``
sink of a pipeline, as ``migrate = true`` does at start."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    migrate = sub.add_parser("migrate", help="apply the missing migrations of every "
                             "postgres sink of the pipeline (safe to run again)")
    migrate.add_argument("-c", "--config", default="streamer.toml",
                         help="pipeline file (default: ./streamer.toml)")
    migrate.add_argument("--sink", help="only the sink of this name")


def postgres_sinks(config: str, name: str | None) -> list[Any] | None:
    """The postgres sinks of the pipeline in ``config`` (only the one named ``name`` when
    given), or None once the file's errors are printed (the file is refused as by check)."""
    from streamer.config import ConfigError, load_pipeline

    try:
        pipeline = load_pipeline(config)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return None
    return [n for n in pipeline.sinks if n.type == "postgres" and (name is None or n.name == name)]


def main(args: argparse.Namespace) -> int:
    sinks = postgres_sinks(args.config, args.sink)
    if sinks is None:
        return 2
    if not sinks:
        which = f"named {args.sink!r} " if args.sink else ""
        print(f"{args.config}: no postgres sink {which}to migrate", file=sys.stderr)
        return 2
    import psycopg

    from streamer_postgres.database import Database

    status = 0
    for node in sinks:
        config = node.options
        database = Database(config)
        try:
            result = database.migrate()
        except psycopg.Error as exc:
            print(f"{node.name}: {config.describe()} schema {config.schema}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        finally:
            database.close()
        applied = ", ".join(f"{m.version} ({m.name})" for m in result.applied) or "none"
        print(f"{node.name}: {config.describe()} schema {config.schema}: applied {applied}")
        for migration in result.skipped:
            print(f"{node.name}: pending {migration.version} ({migration.name}): the "
                  "TimescaleDB extension is not installed in this database")
    return status
