"""A real PostgreSQL server for the tests: ``initdb`` into a temporary directory, then
``postgres`` on a free loopback port with its unix socket in that directory. It never touches
the machine's own server (port 5432, /var/run/postgresql).

PostgreSQL refuses to run as root. When the tests run as root (CI, this machine) the server
runs as ``nobody`` (``$STREAMER_TEST_POSTGRES_USER`` to change it): the temporary directory is
chowned to that user, and the processes are started with ``Popen(user=...)``, so the child
IS the postmaster (no ``runuser`` in between that a SIGKILL would hit instead).

:meth:`PostgresServer.kill` SIGKILLs the postmaster and all its children (backends,
checkpointer, ...) at once, as a machine crash would; :meth:`PostgresServer.pause` SIGSTOPs
them all (a hung server). ``fsync = off`` keeps the tests
fast; it loses nothing a process kill could (a commit's WAL is written to the kernel before
the client hears of it).

The binaries come from ``$STREAMER_TEST_POSTGRES_BIN`` or the newest
/usr/lib/postgresql/*/bin. Missing binaries FAIL the suite (see :mod:`server_process`).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from server_process import ServerProcess, free_port, start_on_free_ports

_START_TIMEOUT = 30.0
#: The role the tests connect as, and its password (TCP connections need it: scram).
USER = "streamer"
PASSWORD = "test-password-123"
#: The environment variable the sinks read the password from in the tests.
PASSWORD_ENV = "STREAMER_TEST_PG_PASSWORD"


def postgres_bin_dir() -> str:
    """Folder of initdb and postgres, or a clear failure."""
    configured = os.environ.get("STREAMER_TEST_POSTGRES_BIN")
    candidates = [configured] if configured else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[::-1]
    for folder in candidates:
        if folder and os.path.exists(os.path.join(folder, "initdb")):
            return folder
    pytest.fail("PostgreSQL server binaries (initdb, postgres) not found in "
                "$STREAMER_TEST_POSTGRES_BIN or /usr/lib/postgresql/*/bin. The PostgreSQL "
                "tests run against a real server: install it (`apt-get install postgresql`).")


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(os.environ.get("STREAMER_TEST_POSTGRES_USER", "nobody"))


class PostgresServer(ServerProcess):
    """One PostgreSQL cluster in a temporary directory, served on 127.0.0.1:``port``."""

    def __init__(self, *, port: int | None = None) -> None:
        super().__init__("postgres", tempfile.mkdtemp(prefix="streamer-postgres-"),
                         "postgres.log")
        self.bin = postgres_bin_dir()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.data = os.path.join(self.workdir, "data")
        self.user = _run_as()
        if self.user is not None:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
        self._initdb()

    def _as_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        pwfile = os.path.join(self.workdir, "pwfile")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        done = subprocess.run(
            [os.path.join(self.bin, "initdb"), "-D", self.data, "-U", USER,
             f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, cwd=self.workdir, timeout=120, **self._as_user(),
        )
        os.unlink(pwfile)
        if done.returncode != 0:
            pytest.fail(f"initdb failed:\n{(done.stdout + done.stderr).decode(errors='replace')}")

    def _args(self) -> list[str]:
        return [
            os.path.join(self.bin, "postgres"), "-D", self.data,
            "-c", f"port={self.port}", "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.workdir}",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=40",
            "-c", "shared_buffers=32MB", "-c", "logging_collector=off",
        ]

    def _popen_options(self) -> dict[str, Any]:
        return {**self._as_user(), "start_new_session": True, "cwd": self.workdir}

    @property
    def dsn(self) -> str:
        """What a sink's ``dsn`` says (no password: that comes from ``PASSWORD_ENV``)."""
        return f"postgresql://{USER}@{self.host}:{self.port}/postgres"

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection for reading back (autocommit)."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD,
                               dbname="postgres", autocommit=True, **kwargs)

    def _answers(self) -> bool:
        import psycopg

        try:
            with self.connect(connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def start(self) -> PostgresServer:
        self.launch()
        self.wait_until(self._answers, _START_TIMEOUT, interval=0.05,
                        waiting_for="did not accept connections")
        return self

    def pids(self) -> list[int]:
        """The postmaster and each of its children (backends, checkpointer, ...)."""
        assert self.process is not None
        pids = [self.process.pid]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                pids.append(int(entry))
        return pids

    def _signal_all(self, sig: signal.Signals) -> None:
        """``sig`` to the postmaster and each of its children. Each child is a process group
        of its own (postgres calls setsid()), so a signal to the postmaster's group would
        miss them."""
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL to the postmaster and every child at once: a crash."""
        if self.process is not None and self.process.poll() is None:
            self._signal_all(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP to the postmaster and every child: a hung server (the kernel still
        accepts connections and takes what is sent; nothing answers)."""
        assert self.process is not None and self.process.poll() is None
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._signal_all(signal.SIGCONT)

    def restart(self) -> None:
        """Kill (if running) and start again on the same port and data: crash recovery."""
        self.kill()
        self.start()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, remove: bool = True) -> None:
        # SIGTERM is a "smart" shutdown that waits for clients: ask for "fast" (SIGINT).
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        super().stop(remove)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (``.dsn .connect() .kill() .restart()``)."""
    server = start_on_free_ports(PostgresServer, PostgresServer.start, PostgresServer.stop)
    try:
        yield server
    finally:
        server.stop()


_schemas = itertools.count(1)


@pytest.fixture
def postgres_schema(postgres_server: PostgresServer,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A schema name of its own for the test on the session server (dropped after), with the
    password in ``$STREAMER_TEST_PG_PASSWORD``; restarts the server if a test killed it."""
    if postgres_server.process is None or postgres_server.process.poll() is not None:
        postgres_server.start()
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    name = f"t{os.getpid()}_{next(_schemas)}"
    try:
        yield name
    finally:
        with postgres_server.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
