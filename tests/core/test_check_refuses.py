"""``streamer check`` refuses what ``streamer run`` refuses, with one clear line per problem
(exit 2, no traceback), through the same validation ``run`` uses. The real CLI entry point
and the installed plugins, with the real environment (``monkeypatch``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer._cli import main

SRC = '[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n'


def check(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]
          ) -> tuple[int, list[str]]:
    path = tmp_path / "streamer.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    rc = main(["check", "-c", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err.splitlines()


@pytest.mark.parametrize("sink, expected", [
    ('type = "websocket"\nhost = "0.0.0.0"\n',
     "sinks[0]: host '0.0.0.0' is not loopback, so clients must authenticate: set auth_user "
     "and export the key in STREAMER_WSS_AUTH_KEY"),
    ('type = "websocket"\nauth_user = "bob"\n',
     "sinks[0]: auth_user is set but the environment variable STREAMER_WSS_AUTH_KEY holding "
     "the key is empty or unset"),
    ('type = "websocket"\nping_interval = nan\nsend_timeout = inf\n',
     "sinks[0].ping_interval: expected a finite number, got nan"),
    ('type = "websocket"\nauth_key_env = "sk-live-abc123 pasted"\n',
     "sinks[0].auth_key_env: expected the name of an environment variable"),
    ('type = "redis"\nurl = "redis://127.0.0.1:6379/0?password=hunter2"\n',
     "sinks[0].url: query parameter 'password' in a URL; secrets are not read from the file"),
    ('type = "files"\ndir = "/proc"\n',
     "sinks[0]: dir: cannot create a file in '/proc': No such file or directory"),
    ('type = "console"\n[[sources]]\ntype = "bybit.spot"\nsymbols = ["BTCUSDT"]\n'
     'capture_dir = "/proc/captures"\n',
     "sources[1]: capture_dir: cannot create a file in '/proc' (to create '/proc/captures' in "
     "it): No such file or directory"),
    ('type = "files"\ndir = "' + "z" * 5000 + '"\n',
     "sinks[0].dir: expected a string of at most 4,096 characters, got '" + "z" * 80
     + "'... (5,000 characters)"),
])
def test_check_refuses_what_run_refuses(tmp_path, capsys, monkeypatch, sink: str,
                                        expected: str) -> None:
    monkeypatch.delenv("STREAMER_WSS_AUTH_KEY", raising=False)
    rc, lines = check(tmp_path, SRC + "[[sinks]]\n" + sink, capsys)
    assert rc == 2
    assert any(expected in line for line in lines), lines
    assert not any("hunter2" in line or "sk-live" in line or "z" * 81 in line
                   for line in lines), lines


def test_check_refuses_a_log_file_it_cannot_open(tmp_path, capsys) -> None:
    sink = '[[sinks]]\ntype = "console"\n'
    rc, lines = check(tmp_path, f'[streamer]\nlog_file = "{tmp_path}/missing/x.log"\n'
                      + SRC + sink, capsys)
    assert rc == 2 and any("log_file: the directory" in line for line in lines), lines
    rc, lines = check(tmp_path, f'[streamer]\nlog_file = "{tmp_path}"\n' + SRC + sink, capsys)
    assert rc == 2 and any("is a directory" in line for line in lines), lines
    rc, lines = check(tmp_path, '[streamer]\nshutdown_timeout = nan\n' + SRC + sink, capsys)
    assert rc == 2 and any("shutdown_timeout: expected a finite number, got nan" in line
                           for line in lines), lines


def test_check_names_an_override_that_names_no_node(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("STREAMER_SINKS__REDSI__URL", "redis://db:6379/0")
    rc, lines = check(tmp_path, SRC + '[[sinks]]\nname = "redis"\ntype = "redis"\n', capsys)
    assert rc == 2
    assert lines[0] == ("$STREAMER_SINKS__REDSI__URL: no node of sinks is named 'REDSI'; "
                        "sinks here: redis (REDIS)"), lines


def test_check_of_a_binary_or_deeply_nested_file(tmp_path, capsys) -> None:
    rc, lines = check(tmp_path, b"\xff\xfe[[sources]]\n", capsys)
    assert rc == 2 and "not UTF-8 text: byte 0xff at line 1" in lines[0], lines
    rc, lines = check(tmp_path, "a = " + "[" * 50_000 + "]" * 50_000 + "\n", capsys)
    assert rc == 2 and "nested" in lines[0], lines
