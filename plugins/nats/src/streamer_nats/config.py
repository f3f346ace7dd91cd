"""The ``nats`` sink's and source's options (imported when the plugin registers: attrs and
the core's validators only; nats-py and the asyncio thread come with the sink or source)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import attrs

from streamer.validators import at_least, at_least_field, between, greater_than
from streamer_nats.connection import NatsConnectionConfig, name_without_wildcards, token


def _subject_prefix(_: Any, __: attrs.Attribute[str], value: str) -> None:
    if not value or any(token(t) != t for t in value.split(".")):
        raise ValueError(f"subject_prefix: expected tokens of letters, digits, '_' or '-', "
                         f"separated by '.', got {value!r}")


@attrs.define
class NatsSinkConfig(NatsConnectionConfig):
    """Every option is checked by its field validator (the one across fields included), so
    the config loader reports all bad ones at once, each with its path."""

    #: First token of every subject: ``<prefix>.<channel>.<data_type>...``.
    subject_prefix: str = attrs.field(default="bybit", validator=_subject_prefix)
    #: Stream replicas when the sink creates the stream (1, or 3 on a 3-node cluster).
    replicas: int = attrs.field(default=1, validator=between(1, 5))
    #: JetStream's de-duplication window: a message id seen within it is stored once.
    duplicate_window_s: float = attrs.field(default=120.0, validator=greater_than(0))
    #: Stream retention when the sink creates it: max age (s, 0 = unlimited) and storage.
    max_age_s: float = attrs.field(default=86_400.0, validator=at_least(0))
    storage: Literal["file", "memory"] = "file"
    #: Create the stream if missing (else it must exist); an existing one is checked.
    create_stream: bool = True
    #: Unacknowledged publishes at most (a chunk is never larger).
    max_in_flight: int = attrs.field(default=4_000, validator=at_least(1))
    #: Events per hand-over to the asyncio thread.
    max_chunk: int = attrs.field(default=4_000, validator=at_least(1))
    #: Seconds to wait for the acks of a chunk before publishing the missing ones again.
    ack_timeout: float = attrs.field(default=5.0, validator=greater_than(0))
    #: Events held while NATS is down or slow; beyond it the oldest are dropped (``failed``).
    max_buffer: int = attrs.field(default=100_000, validator=at_least(1))
    #: Publish closed klines flagged ``partial`` (under their own id, see the docs).
    publish_partial_klines: bool = True
    #: Retry backoff bounds, seconds.
    retry_initial: float = attrs.field(default=0.2, validator=greater_than(0))
    retry_max: float = attrs.field(default=5.0, validator=at_least_field("retry_initial"))
    #: At shutdown, how long to keep publishing what is buffered.
    shutdown_timeout: float = attrs.field(default=5.0, validator=greater_than(0))


def _subjects(_: Any, __: attrs.Attribute[list[str]], value: list[str]) -> None:
    if not value or any(not s or " " in s for s in value):
        raise ValueError(f'subjects: expected one or more subject filters without spaces, '
                         f'e.g. ["bybit.>"], got {value!r}')


def _start_time(instance: Any, _: attrs.Attribute[str | None], value: str | None) -> None:
    if instance.deliver == "time":
        if value is None:
            raise ValueError('start_time: deliver = "time" needs start_time (ISO 8601)')
        _parse_time(value)


def _start_sequence(instance: Any, _: attrs.Attribute[int | None], value: int | None) -> None:
    if instance.deliver == "sequence" and (value is None or value < 1):
        raise ValueError(f'start_sequence: deliver = "sequence" needs start_sequence >= 1, '
                         f'got {value!r}')


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"start_time {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise ValueError(f"start_time {value!r} needs a time zone (e.g. Z)")
    return parsed


@attrs.define
class NatsSourceConfig(NatsConnectionConfig):
    """Every option is checked by its field validator (those that depend on ``deliver``
    included), so the config loader reports all bad ones at once, each with its path."""

    #: Subject filters, one durable consumer each (e.g. ["bybit.linear.trades.>"]).
    subjects: list[str] = attrs.field(factory=lambda: ["bybit.>"], validator=_subjects)
    #: Durable consumer name (kept by the server: a restart resumes after the last ack).
    durable: str = attrs.field(default="streamer", validator=name_without_wildcards)
    #: Where a new consumer starts: "new" (from now), "all", "last", "last_per_subject",
    #: "time" (start_time) or "sequence" (start_sequence). An existing durable resumes.
    deliver: Literal["new", "all", "last", "last_per_subject", "time", "sequence"] = "new"
    #: ISO 8601 time for deliver = "time", e.g. "2026-12-01T10:00:00+00:00".
    start_time: str | None = attrs.field(default=None, validator=_start_time)
    #: Stream sequence for deliver = "sequence".
    start_sequence: int | None = attrs.field(default=None, validator=_start_sequence)
    #: Messages per fetch (and per emitted batch) at most.
    batch: int = attrs.field(default=1_000, validator=between(1, 10_000))
    #: Seconds a fetch waits for the first message.
    fetch_timeout: float = attrs.field(default=1.0, validator=greater_than(0))
    #: Seconds before JetStream redelivers an unacknowledged message.
    ack_wait: float = attrs.field(default=30.0, validator=greater_than(0))
    #: Unacknowledged messages per consumer at most (JetStream stops delivering beyond).
    max_ack_pending: int = attrs.field(default=20_000, validator=at_least(1))

    def parsed_start_time(self) -> datetime | None:
        if self.start_time is None or self.deliver != "time":
            return None
        return _parse_time(self.start_time)
