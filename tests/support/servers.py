"""Throwaway PostgreSQL and redis-server instances for tests and benchmarks.

PostgreSQL refuses to run as root, so when we are root the cluster runs as the ``postgres``
user (created if missing) in a temporary directory it owns. Ports are picked free on loopback;
port 5432 is never used. Every process started here is stopped by ``stop()``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

STARTUP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != 5432:
            return port


def postgres_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(f"{name} not found: install the postgresql package (make test does)")
    return candidates[-1]


def _ensure_postgres_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/false", "postgres"],
            check=True,
        )
    return "postgres"


def _as_user(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


@dataclass
class PostgresServer:
    port: int
    directory: str
    user: str | None
    databases: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *, max_connections: int = 400) -> PostgresServer:
        user = _ensure_postgres_user() if os.geteuid() == 0 else None
        directory = tempfile.mkdtemp(prefix="coffer-pg-", dir="/tmp")
        os.chmod(directory, 0o700)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        data = os.path.join(directory, "data")
        subprocess.run(
            _as_user(
                user, [postgres_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        port = free_port()
        options = (
            f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections} -c shared_buffers=256MB "
            "-c synchronous_commit=on -c fsync=on"
        )
        subprocess.run(
            _as_user(
                user,
                [
                    postgres_bin("pg_ctl"),
                    "-D",
                    data,
                    "-o",
                    options,
                    "-l",
                    os.path.join(directory, "log"),
                    "-w",
                    "-t",
                    str(STARTUP_TIMEOUT_SECONDS),
                    "start",
                ],
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return cls(port=port, directory=directory, user=user)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def stop(self) -> None:
        data = os.path.join(self.directory, "data")
        subprocess.run(
            _as_user(self.user, [postgres_bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: install the redis-server package (make test does)")
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return cls(port=port, process=process)
            except OSError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
