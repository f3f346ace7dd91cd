"""The Dockerfile and the compose files, checked without a Docker engine: they parse, and
their services, ports, volumes and health checks agree with the container's streamer.toml
and with each other; the Dockerfile installs with the command scripts/setup uses; its
HEALTHCHECK command works against a real /healthz."""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import trio
import yaml

from streamer._config import load_config_file
from streamer._metrics_http import serve_ops
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer._settings import parse_address

ROOT = Path(__file__).resolve().parents[2]
CONFIG_IN_IMAGE = "/etc/streamer/streamer.toml"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def container_config(environment: dict[str, str] | None = None):
    """deploy/streamer.toml as the container reads it, with a compose file's ``environment``
    (its literal values: overrides such as STREAMER_SINKS__...) on top."""
    # The compose file passes the WebSocket key in; `streamer run` refuses to start without it.
    environ = {"STREAMER_WSS_AUTH_KEY": "a key from the compose environment",
               **(environment or {})}
    return load_config_file(ROOT / "deploy" / "streamer.toml", load_plugin_manager(),
                            environ=environ)


def healthcheck_code(test: list[str]) -> str:
    assert test[:3] == ["CMD", "python", "-c"]
    return test[3]


def test_dockerfile_slim_non_root_installs_like_setup() -> None:
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.\d+-slim", base)
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    # The install step is scripts/install, the very command scripts/setup runs.
    assert any(r.startswith("./scripts/install") for r in instructions("RUN"))
    assert "./scripts/install --editable --dev" in (ROOT / "scripts" / "setup").read_text()
    copies = [c.split() for c in instructions("COPY")]
    assert ["deploy/streamer.toml", CONFIG_IN_IMAGE] in copies
    assert ["scripts/install", "./scripts/install"] in copies
    entry = json.loads(instructions("ENTRYPOINT")[0]) + json.loads(instructions("CMD")[0])
    assert entry == ["streamer", "run", "-c", CONFIG_IN_IMAGE]
    # The ports it exposes are those of the config it carries.
    config = container_config()
    exposed = {int(p) for p in instructions("EXPOSE")[0].split()}
    websocket = next(n for n in config.sinks if n.type == "websocket").options
    assert exposed == {parse_address(config.settings.metrics)[1], websocket.port}


def test_compose_agrees_with_the_config_and_the_dockerfile() -> None:
    doc = compose()
    assert set(doc["services"]) == {"redis", "streamer"}
    streamer = doc["services"]["streamer"]
    assert streamer["build"] == "."
    assert streamer["command"] == ["run", "-c", CONFIG_IN_IMAGE]
    assert "./deploy/streamer.toml:/etc/streamer/streamer.toml:ro" in streamer["volumes"]
    assert streamer["depends_on"]["redis"]["condition"] == "service_healthy"
    config = container_config()
    metrics_host, metrics_port = parse_address(config.settings.metrics)
    assert metrics_host == "0.0.0.0"  # reachable from outside the container's loopback
    websocket = next(n for n in config.sinks if n.type == "websocket").options
    published = {int(p.rsplit(":", 2)[-1]): p for p in streamer["ports"]}
    assert set(published) == {metrics_port, websocket.port}
    assert all(p.startswith("127.0.0.1:") for p in published.values())
    # Every Redis sink points at the compose service.
    for node in config.sinks:
        if node.type in ("redis", "storage"):
            assert node.options.url.startswith("redis://redis:6379")
    # Secrets the config reads through *_env come from the compose environment.
    assert websocket.auth_key_env in streamer["environment"]
    # One health check, the same in the Dockerfile and in the compose file, on /healthz.
    (docker_check,) = instructions("HEALTHCHECK")
    docker_cmd = json.loads(docker_check[docker_check.index("CMD") + 4:])
    assert ["CMD", *docker_cmd] == streamer["healthcheck"]["test"]
    code = healthcheck_code(streamer["healthcheck"]["test"])
    assert f"http://127.0.0.1:{metrics_port}/healthz" in code
    assert "redis-data" in doc["volumes"]
    assert any(v.startswith("redis-data:") for v in doc["services"]["redis"]["volumes"])


def test_traefik_variant_routes_tls_to_the_websocket_sink() -> None:
    doc = compose("docker-compose.traefik.yml")
    labels = doc["services"]["streamer"]["labels"]
    websocket = next(n for n in container_config().sinks if n.type == "websocket").options
    assert labels["traefik.http.services.streamer.loadbalancer.server.port"] == str(
        websocket.port)
    assert "${STREAMER_HOST" in labels["traefik.http.routers.streamer.rule"]
    assert labels["traefik.http.routers.streamer.tls.certresolver"] == "le"
    traefik = doc["services"]["traefik"]
    assert "443:443" in traefik["ports"]
    assert any("websecure.address=:443" in c for c in traefik["command"])


def test_traefik_variant_makes_the_sink_trust_traefik_alone() -> None:
    """Behind Traefik the sink's per-address limits must count each client: the Traefik file
    sets trusted_proxies of the mounted config's websocket sink (an environment override) to
    exactly Traefik's fixed address, a /32 of the compose network it pins (nothing else on
    it, the Docker gateway included, is believed)."""
    doc = compose("docker-compose.traefik.yml")
    traefik_ip = ipaddress.ip_address(
        doc["services"]["traefik"]["networks"]["default"]["ipv4_address"])
    (pool,) = doc["networks"]["default"]["ipam"]["config"]
    subnet = ipaddress.ip_network(pool["subnet"])
    assert traefik_ip in subnet and traefik_ip != next(subnet.hosts())  # not the gateway
    environment = doc["services"]["streamer"]["environment"]
    websocket = next(n for n in container_config(environment).sinks
                     if n.type == "websocket").options
    assert websocket.trusted_proxies == [f"{traefik_ip}/32"]
    assert websocket.forwarded_header == "x-forwarded-for"
    # Traefik writes X-Forwarded-For itself: it must not be told to pass on a client's.
    assert not any("forwardedheaders" in c.lower() for c in doc["services"]["traefik"]["command"])
    # The plain compose setup has no proxy: there the header is never believed.
    plain = next(n for n in container_config().sinks if n.type == "websocket").options
    assert plain.trusted_proxies == []


async def test_the_healthcheck_command_passes_against_a_live_listener(tmp_path) -> None:
    """The HEALTHCHECK's own command, pointed at a real ops listener: exit 0 while it
    answers, non-zero once nothing listens."""
    pm = load_plugin_manager()
    toml = tmp_path / "p.toml"
    toml.write_text('[[sources]]\ntype = "bybit.linear"\nsymbols = ["BTCUSDT"]\n'
                    '[[sinks]]\ntype = "console"\n')
    pipeline = Pipeline(load_config_file(toml, pm, environ={}), pm)
    code = healthcheck_code(compose()["services"]["streamer"]["healthcheck"]["test"])
    async with trio.open_nursery() as nursery:
        ops = await nursery.start(functools.partial(serve_ops, pipeline, "127.0.0.1:0"))
        live = code.replace(":9464/", f":{ops.port}/")
        result = await trio.run_process([sys.executable, "-c", live], check=False)
        assert result.returncode == 0, shlex.join([sys.executable, "-c", live])
        port = ops.port
        nursery.cancel_scope.cancel()
    result = await trio.run_process([sys.executable, "-c", code.replace(":9464/", f":{port}/")],
                                    check=False, stderr=subprocess.DEVNULL)
    assert result.returncode != 0
