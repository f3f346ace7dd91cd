"""The Dockerfile and the compose files, checked without a Docker engine: they parse, and
their services, ports, volumes, ownership, passwords and health checks agree with the
configs they ship (deploy/image.toml in the image, deploy/streamer.toml in compose) and with
each other; the Dockerfile installs with the command scripts/setup uses; its HEALTHCHECK
command works against a real /healthz, and compose's Redis command and health check against
a real redis-server."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
import yaml
from redis_server import RedisServer

from streamer._address import parse_address
from streamer._config import load_config_file
from streamer._metrics_http import serve_ops
from streamer._plugins import load_plugin_manager
from streamer._runtime import Pipeline
from streamer_redis.connection import make_client
from streamer_redis.resp import TrioConnection

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


def container_config(name: str = "streamer.toml", environment: dict[str, str] | None = None):
    """deploy/streamer.toml (compose mounts it) or deploy/image.toml (the image's own), with a
    compose file's ``environment`` (its literal values: overrides such as STREAMER_SINKS__...)
    on top."""
    # The compose file passes the WebSocket key in; `streamer run` refuses to start without it.
    environ = {"STREAMER_WSS_AUTH_KEY": "a key from the compose environment",
               **(environment or {})}
    return load_config_file(ROOT / "deploy" / name, load_plugin_manager(), environ=environ)


def interpolate(value: str, env: dict[str, str]) -> str:
    """What docker compose makes of ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert op != ":?", f"compose refuses to start without {name}: {arg}"
        return arg if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


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
    assert ["deploy/image.toml", CONFIG_IN_IMAGE] in copies
    assert ["scripts/install", "./scripts/install"] in copies
    entry = json.loads(instructions("ENTRYPOINT")[0]) + json.loads(instructions("CMD")[0])
    assert entry == ["streamer", "run", "-c", CONFIG_IN_IMAGE]
    # The ports it exposes are those of the config it carries, which serves the metrics
    # its HEALTHCHECK asks and needs no host that only compose has (no Redis at "redis").
    config = container_config("image.toml")
    assert config.settings.metrics is not None
    metrics_port = parse_address(config.settings.metrics)[1]
    exposed = {int(p) for p in instructions("EXPOSE")[0].split()}
    websocket = next(n for n in config.sinks if n.type == "websocket").options
    assert exposed == {metrics_port, websocket.port}
    (docker_check,) = instructions("HEALTHCHECK")
    assert f"http://127.0.0.1:{metrics_port}/healthz" in docker_check
    assert "redis://redis" not in (ROOT / "deploy" / "image.toml").read_text()


def test_the_working_directory_is_a_volume_the_user_owns() -> None:
    """A relative path of a config (a files sink, capture_dir) lands in the working
    directory: it must be writable by the user the image runs as, and a volume."""
    (useradd,) = [r for r in instructions("RUN") if "useradd" in r]
    user = useradd.split("&&")[0].split()[-1]
    assert instructions("USER")[-1] == user
    workdir = instructions("WORKDIR")[-1]
    assert f"install -d -o {user} -g {user} " in useradd and useradd.endswith(f" {workdir}")
    assert json.loads(instructions("VOLUME")[-1]) == [workdir]
    # Docker keeps what a volume holds before VOLUME only: the directory is made first.
    order = [i for i, _ in dockerfile()]
    run_at = next(i for i, (k, a) in enumerate(dockerfile()) if k == "RUN" and a == useradd)
    assert run_at < order.index("VOLUME")
    # compose keeps it in a named volume across re-creations of the container.
    doc = compose()
    mounts = [v for v in doc["services"]["streamer"]["volumes"] if v.endswith(f":{workdir}")]
    assert len(mounts) == 1 and mounts[0].split(":")[0] in doc["volumes"]


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
    websocket = next(n for n in container_config(environment=environment).sinks
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


class ComposeRedis(RedisServer):
    """A redis-server whose password comes from compose's command alone; ``password`` is
    only what the harness's readiness probe authenticates with."""

    def _args(self) -> list[str]:
        password, self.password = self.password, None
        try:
            return super()._args()
        finally:
            self.password = password


@pytest.mark.parametrize("password", ["s3cret pass", ""])
async def test_compose_redis_takes_the_password_the_streamer_sends(password, monkeypatch) -> None:
    """compose's own Redis command and health check, run on a real redis-server, with the
    password in STREAMER_REDIS_PASSWORD or none: every Redis sink of the mounted config
    connects (on the sinks' own connection) with the password compose hands the streamer,
    and the health check says
    healthy only with the right password."""
    doc = compose()
    env = {"STREAMER_REDIS_PASSWORD": password, "STREAMER_WSS_AUTH_KEY": "k"}
    redis_service, streamer = doc["services"]["redis"], doc["services"]["streamer"]
    command = [interpolate(a, env) for a in redis_service["command"]]
    assert command[0] == "redis-server"
    streamer_env = {k: interpolate(str(v), env) for k, v in streamer["environment"].items()}
    redis_env = {k: interpolate(str(v), env) for k, v in redis_service["environment"].items()}
    # The test's server stays in its own directory on loopback; compose's options follow.
    with ComposeRedis(extra_args=command[1:], password=password or None) as server:
        for node in container_config().sinks:
            if node.type not in ("redis", "storage"):
                continue
            for name in ("STREAMER_REDIS_PASSWORD", node.options.password_env):
                monkeypatch.delenv(name, raising=False)
            if node.options.password_env in streamer_env:
                monkeypatch.setenv(node.options.password_env,
                                   streamer_env[node.options.password_env])
            client = make_client(attrs.evolve(node.options, url=server.url))
            connection = TrioConnection(client)
            try:
                assert await connection.execute([["PING"]]) == [b"PONG"], node.type
            finally:
                connection.close()
                client.close()
        kind, check = redis_service["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        check = check.replace("redis-cli", f"redis-cli -h 127.0.0.1 -p {server.port}")

        def health(auth: str) -> int:
            run_env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
            return subprocess.run(["sh", "-c", check], env=run_env | {"REDISCLI_AUTH": auth},
                                  capture_output=True, timeout=30).returncode

        assert health(redis_env["REDISCLI_AUTH"]) == 0
        if password:
            assert health("wrong") != 0
