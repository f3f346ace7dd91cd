"""The nats sink's and source's options as the config loader reports them: every bad option
at once, each with its path, not only the first."""

from __future__ import annotations

from streamer.testing import config_errors

SOURCE = """
[[sources]]
type = "testing.scripted"
"""


def errors_of(toml: str, plugin_manager) -> list[str]:
    errors = config_errors(toml, plugin_manager)
    assert errors, "the config was accepted"
    return errors


def test_every_bad_sink_option_is_reported_with_its_path(plugin_manager) -> None:
    toml = SOURCE + """
[[sinks]]
type = "nats"
url = "http://x"
stream = "A.B"
connect_timeout = 0
subject_prefix = "a.>"
replicas = 7
max_age_s = -1
max_chunk = 0
retry_initial = 2.0
retry_max = 1.0
"""
    assert errors_of(toml, plugin_manager) == [
        "s.toml: sinks[0].url: expected nats://host:port or tls://host:port, got 'http://x'",
        "s.toml: sinks[0].stream: expected a name without '.', '*', '>' or spaces, got 'A.B'",
        "s.toml: sinks[0].connect_timeout: expected more than 0, got 0.0",
        "s.toml: sinks[0].subject_prefix: expected tokens of letters, digits, '_' or '-', "
        "separated by '.', got 'a.>'",
        "s.toml: sinks[0].replicas: expected 1 to 5, got 7",
        "s.toml: sinks[0].max_age_s: expected at least 0, got -1.0",
        "s.toml: sinks[0].max_chunk: expected at least 1, got 0",
        "s.toml: sinks[0].retry_max: retry_max (1) must be at least retry_initial (2)",
    ]


def test_every_bad_source_option_is_reported_with_its_path(plugin_manager) -> None:
    toml = """
[[sources]]
type = "nats"
url = []
subjects = []
durable = "a b"
deliver = "time"
start_time = "2026-12-01T10:00:00"
batch = 0
ack_wait = 0
max_ack_pending = 0

[[sinks]]
type = "testing.collect"
"""
    assert errors_of(toml, plugin_manager) == [
        "s.toml: sources[0].url: give at least one nats://host:port",
        "s.toml: sources[0].subjects: expected one or more subject filters without spaces, "
        "e.g. [\"bybit.>\"], got []",
        "s.toml: sources[0].durable: expected a name without '.', '*', '>' or spaces, "
        "got 'a b'",
        "s.toml: sources[0].start_time: start_time '2026-12-01T10:00:00' needs a time zone "
        "(e.g. Z)",
        "s.toml: sources[0].batch: expected 1 to 10000, got 0",
        "s.toml: sources[0].ack_wait: expected more than 0, got 0.0",
        "s.toml: sources[0].max_ack_pending: expected at least 1, got 0",
    ]


def test_deliver_sequence_needs_a_start_sequence(plugin_manager) -> None:
    toml = """
[[sources]]
type = "nats"
deliver = "sequence"

[[sinks]]
type = "testing.collect"
"""
    assert errors_of(toml, plugin_manager) == [
        "s.toml: sources[0].start_sequence: deliver = \"sequence\" needs start_sequence >= 1, "
        "got None",
    ]
