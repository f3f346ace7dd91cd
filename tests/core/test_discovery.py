"""Plugins are found through entry points of installed distributions, like third-party ones."""

from __future__ import annotations

import subprocess
import sys

from proc_io import readline_within

STREAMER = [sys.executable, "-m", "streamer"]


def test_streamer_plugins_lists_entry_point_plugins(plugin_env) -> None:
    out = subprocess.run([*STREAMER, "plugins"], env=plugin_env(), capture_output=True,
                         text=True, timeout=60)
    assert "console      streamer-console 0.1.0" in out.stdout
    assert "sink:console" in out.stdout
    assert "demo         streamer-demo 1.2.3" in out.stdout
    assert "source:demo.ticks" in out.stdout
    # The broken plugin is reported with its name and error; the others still loaded.
    assert "broken" in out.stdout
    assert "FAILED TO LOAD: ImportError: streamer_broken needs a library" in out.stdout
    # A misspelt hook name is caught when the plugin loads, with the names it could mean.
    misspelt = [line for line in out.stdout.splitlines() if line.startswith("misspelt")]
    assert len(misspelt) == 1, out.stdout
    assert "FAILED TO LOAD" in misspelt[0]
    assert "streamer_register_sink" in misspelt[0]
    assert "streamer_register_sinks" in misspelt[0]
    assert out.returncode == 1


def test_disable_plugins_env_blocks_by_name(plugin_env) -> None:
    env = plugin_env(STREAMER_DISABLE_PLUGINS="broken, demo,misspelt")
    out = subprocess.run([*STREAMER, "plugins"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert "demo.ticks" not in out.stdout
    assert "demo         blocked by STREAMER_DISABLE_PLUGINS" in out.stdout
    assert "broken       blocked by STREAMER_DISABLE_PLUGINS" in out.stdout
    assert "sink:console" in out.stdout


def test_third_party_source_runs_end_to_end_to_console(plugin_env, tmp_path) -> None:
    """`streamer run` with an installed third-party source and the console sink: JSON lines on
    stdout (nothing else), logs on stderr, SIGTERM flushes and exits 0."""
    import json
    import signal

    config = tmp_path / "streamer.toml"
    config.write_text(
        '[[sources]]\nname = "ticks"\ntype = "demo.ticks"\ninterval = 0.01\n\n'
        '[[sinks]]\ntype = "console"\nformat = "json"\n'
    )
    proc = subprocess.Popen([*STREAMER, "run", "-c", str(config)], env=plugin_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [readline_within(proc.stdout, 30, "streamer run") for _ in range(5)]
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    for line in [*lines, *rest.splitlines()]:
        envelope = json.loads(line)
        assert envelope["channel"] == "linear"
        assert envelope["data_type"] == "trades"
        assert set(envelope["data"][0]) == {"T", "s", "S", "v", "p", "i"}
        assert envelope["data"][0]["s"] == "DEMOUSDT"
    assert "pipeline running" in err
    assert "Traceback" not in err


def test_check_lists_every_error_with_file_and_path(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[streamer]\nlog_level = "LOUD"\nshutdown_timeout = "soon"\n\n'
        '[[sources]]\ntype = "no.such.source"\n\n'
        '[[sinks]]\ntype = "console"\nformat = "xml"\ncolour = true\ninputs = ["ghost"]\n'
    )
    out = subprocess.run([*STREAMER, "check", "-c", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    f = str(bad)
    assert f"{f}: streamer.log_level: expected one of 'DEBUG', 'INFO', 'WARNING', 'ERROR', " \
           "got 'LOUD'" in lines
    assert f"{f}: streamer.shutdown_timeout: expected a number, got 'soon'" in lines
    assert any(line.startswith(f"{f}: sources[0].type: unknown source type 'no.such.source'")
               for line in lines)
    assert f"{f}: sinks[0].format: expected one of 'json', 'pretty', got 'xml'" in lines
    assert any(line.startswith(f"{f}: sinks[0]: unknown key(s) colour") for line in lines)
    assert any(line.startswith(f"{f}: sinks[0].inputs[0]: 'ghost' is unknown") for line in lines)
    assert lines[-1] == f"6 errors in {f}"


def test_check_accepts_a_valid_file_and_needs_the_plugin(tmp_path, plugin_env) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[sources]]\nname = "a"\ntype = "demo.ticks"\n[[sinks]]\ntype = "console"\n')
    out = subprocess.run([*STREAMER, "check", "-c", str(good)], env=plugin_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "sink      console (console) <- a" in out.stdout
    # Without the plugin installed: a clear error naming the type, not a crash.
    out = subprocess.run([*STREAMER, "check", "-c", str(good)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "unknown source type 'demo.ticks'" in out.stderr


def test_plugin_template_installs_and_its_own_test_passes(tmp_path) -> None:
    """plugins/_template is a working plugin: pip-install it and run the test it ships."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(root / "plugins/_template")],
        check=True, timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([*STREAMER, "plugins"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert "myplugin     streamer-myplugin 0.1.0" in out.stdout
    assert "sink:myplugin.jsonl" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(root / "plugins/_template/tests")],
        env=env, cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
