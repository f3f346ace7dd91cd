"""The postgres sink's options: what `streamer check` refuses, with the path of each."""

from __future__ import annotations

import pytest

from streamer.testing import config_errors

PIPE = """
[[sources]]
type = "testing.scripted"

[[sinks]]
type = "postgres"
inputs = ["testing.scripted"]
{options}
"""


def _errors(plugin_manager, options: str) -> list[str]:
    return config_errors(PIPE.format(options=options), plugin_manager)


def test_defaults_are_valid(plugin_manager):
    assert _errors(plugin_manager, "") == []


@pytest.mark.parametrize("dsn", [
    "postgresql://streamer:hunter2@db:5432/market",
    "postgres://u:p@127.0.0.1/market",
])
def test_a_password_in_a_dsn_url_is_refused(plugin_manager, dsn):
    errors = _errors(plugin_manager, f'dsn = "{dsn}"')
    # The core refuses a secret in any URL of the file before the sink's own check does.
    assert len(errors) == 1
    assert "sinks[0].dsn: a password in a URL" in errors[0]
    assert "hunter2" not in errors[0] and ":p@" not in errors[0]


def test_the_sink_refuses_a_password_in_a_dsn_url_itself():
    from streamer_postgres.config import PostgresSinkConfig

    with pytest.raises(ValueError, match=r"dsn must not contain a password.*\$PG_PW"):
        PostgresSinkConfig(dsn="postgresql://u:hunter2@db/market", password_env="PG_PW")


def test_a_password_keyword_in_a_dsn_is_refused(plugin_manager):
    errors = _errors(plugin_manager, 'dsn = "host=db dbname=market password=hunter2"\n'
                                     'password_env = "PG_PW"')
    assert len(errors) == 1
    assert "dsn must not contain password=" in errors[0] and "$PG_PW" in errors[0]


@pytest.mark.parametrize("schema", ["Market", "1market", "pg_market", "market;drop", "",
                                    "a" * 64, "market data"])
def test_bad_schema_names_are_refused(plugin_manager, schema):
    errors = _errors(plugin_manager, f'schema = "{schema}"')
    assert len(errors) == 1 and "schema" in errors[0], errors


def test_unknown_data_types_are_refused(plugin_manager):
    errors = _errors(plugin_manager, 'data_types = ["trades", "liquidations"]')
    assert errors == ["s.toml: sinks[0].data_types: unknown 'liquidations'; expected some of "
                      "trades, klines, ticker"]


@pytest.mark.parametrize("wait", ["-1", "60.5"])
def test_history_wait_past_its_bounds_is_refused(plugin_manager, wait):
    errors = _errors(plugin_manager, f"history_wait = {wait}")
    assert len(errors) == 1 and errors[0].startswith("s.toml: sinks[0].history_wait:"), errors


def test_a_spool_dir_that_cannot_take_files_is_refused(plugin_manager, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    errors = _errors(plugin_manager, f'spool_dir = "{blocker}/spool"')
    assert len(errors) == 1 and "sinks[0]: spool_dir:" in errors[0], errors


def test_psycopg_is_not_imported_to_check_a_config(plugin_manager):
    import subprocess
    import sys

    code = ("import sys; import streamer_postgres.plugin; "
            "assert 'psycopg' not in sys.modules, 'imported at registration'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
