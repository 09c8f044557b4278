"""Real Redis and PostgreSQL servers for tests: free ports, data and sockets in a fresh temp dir, stopped and removed
after. Each can be stopped and started again on the same port with its data, to test what happens while it is away.

    with redis_server() as redis, postgres_server() as postgres:
        storage_url, database_url = redis.url, postgres.create_database("stepup")

The binaries come from Debian's packages (`redis-server`, `postgresql`); `.ci/run` installs them. When one is
missing, `require_binaries` skips with the reason, except under CI=true, where it fails. PostgreSQL refuses to run
as root, so as root its commands run as the `postgres` user (`runuser`) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from support.live_server import free_port

POSTGRES_USER = "postgres"


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server binaries out of PATH, one directory per major version: take the newest.
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return str(candidates[-1]) if candidates else None


def missing_binaries() -> list[str]:
    missing = [name for name in ("redis-server",) if shutil.which(name) is None]
    missing += [name for name in ("initdb", "pg_ctl") if postgres_bin(name) is None]
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(POSTGRES_USER)
        except KeyError:
            missing.append(f"the {POSTGRES_USER} user (PostgreSQL refuses to run as root)")
        if shutil.which("runuser") is None:
            missing.append("runuser")
    return missing


def require_binaries() -> None:
    """Skip (with the reason printed) when the servers cannot run here; under CI=true, fail instead."""
    missing = missing_binaries()
    if not missing:
        return
    reason = f"real Redis/PostgreSQL tests need {', '.join(missing)} (apt-get install redis-server postgresql)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires them to run")
    print(f"skipping: {reason}")  # noqa: T201 - the reason should be visible in the run's output
    pytest.skip(reason)


def _wait_for_port(port: int, what: str, alive: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{what} exited while starting (code {alive.returncode})")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout} s")


# -- Redis ------------------------------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket_path(self) -> Path:
        return self.directory / "redis.sock"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> None:
        assert self.process is None, "already running"
        binary = shutil.which("redis-server")
        assert binary
        # Every write goes to the append-only file at once, so a stop and start keeps the data (as a persistent
        # production Redis would); no RDB snapshots.
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--logfile", str(self.directory / "redis.log"),
                # DEBUG SLEEP from this machine only: tests use it to make Redis slow on purpose.
                "--enable-debug-command", "local",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(self.port, "redis-server", self.process)
        deadline = time.monotonic() + 30
        while True:  # listening is not ready: it may still be loading the append-only file
            try:
                self.client().ping()
                return
            except redis.exceptions.BusyLoadingError:
                assert time.monotonic() < deadline, "redis-server kept loading"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)  # redis-server closes its files and exits
        self.process.wait(timeout=30)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)

    def age(self, seconds: float) -> None:
        """Let `seconds` pass for every key, as far as expiry goes: Redis keeps its own clock, which tests cannot
        move, so each key's remaining time is shortened instead (and keys whose time is up are deleted)."""
        client = self.client()
        for key in client.scan_iter(count=1000):
            remaining = int(client.pttl(key))
            if remaining < 0:
                continue
            left = remaining - int(seconds * 1000)
            if left <= 0:
                client.delete(key)
            else:
                client.pexpire(key, left)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    require_binaries()
    directory = Path(tempfile.mkdtemp(prefix="stepup-redis-"))
    server = RedisServer(directory, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- PostgreSQL -----------------------------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    directory: Path
    port: int
    superuser_password: str
    running: bool = False
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sockets"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", POSTGRES_USER, "--"] if os.geteuid() == 0 else []
        completed = subprocess.run(  # noqa: S603 - fixed command lines
            [*prefix, *command], capture_output=True, text=True, timeout=120, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed: {completed.stdout}\n{completed.stderr}")

    def init(self) -> None:
        password_file = self.directory / "pwfile"
        password_file.write_text(self.superuser_password)
        self._chown(password_file)
        initdb = postgres_bin("initdb")
        assert initdb
        # Password (SCRAM) over TCP, as in production; trust on the private socket directory, for the fixture.
        self._run(
            initdb, "-D", str(self.data), "-U", POSTGRES_USER, f"--pwfile={password_file}", "-E", "UTF8",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "--no-instructions",
        )  # fmt: skip
        password_file.unlink()

    def start(self) -> None:
        pg_ctl = postgres_bin("pg_ctl")
        assert pg_ctl
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            # A throwaway cluster: skip what only protects against an OS crash, so the tests stay quick.
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            pg_ctl, "-D", str(self.data), "-l", str(self.directory / "postgres.log"), "-o", options, "-w", "start"
        )
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        pg_ctl = postgres_bin("pg_ctl")
        assert pg_ctl
        # Fast shutdown: open connections are cut, as when a server goes away.
        self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(POSTGRES_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=POSTGRES_USER, password=self.superuser_password,
            dbname="postgres", autocommit=True,
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        """A database and its owner role of the same name, with a password; its postgresql:// URL."""
        password = secrets.token_urlsafe(16)
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(name)))
        self.passwords[name] = password
        return self.url(name)

    def url(self, role: str, *, dbname: str | None = None, password: str | None = None) -> str:
        """The postgresql:// URL of `role`'s database (another database name or password: for error tests)."""
        secret = password if password is not None else self.passwords[role]
        return f"postgresql://{role}:{secret}@127.0.0.1:{self.port}/{dbname or role}"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    require_binaries()
    directory = Path(tempfile.mkdtemp(prefix="stepup-postgres-"))
    server = PostgresServer(directory, free_port(), secrets.token_urlsafe(16))
    try:
        server._chown(directory)
        server.socket_dir.mkdir()
        server._chown(server.socket_dir)
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
