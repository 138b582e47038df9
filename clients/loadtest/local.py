"""Throwaway infrastructure for ``make loadtest`` and ``make bench``, run from a checkout of the
repository: a PostgreSQL cluster (tests/support/servers.py), the engine as a child process
(``python server.py``, tests/support/engines.py), a sampler of the engine's resident memory and
a meter of the CPU its process tree spends (from /proc).

Everything started here is stopped by the context managers, whatever happens in between.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from clients.loadtest.credentials import CA_FILE

if TYPE_CHECKING:
    from tests.support.engines import EngineProcess
    from tests.support.servers import PostgresServer

__all__ = [
    "CpuMeter",
    "RssSampler",
    "cpu_tree_seconds",
    "engine_process",
    "make_certificates",
    "postgres_cluster",
    "process_tree",
    "rss_mb",
    "rss_tree_mb",
    "sqlite_shards",
]

RSS_SAMPLE_INTERVAL_SECONDS = 0.1
#: /proc/<pid>/stat fields after the command name: state is field 3, utime 14, stime 15.
_STAT_PPID, _STAT_UTIME, _STAT_STIME = 1, 11, 12
#: Bounds the walk of a process tree (the engine has a parent, its workers and a helper or two).
MAX_TREE_PROCESSES = 256


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    from tests.support.servers import PostgresServer

    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def sqlite_shards(directory: Path, count: int = 2) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        for suffix in ("", "-wal", "-shm"):
            (directory / f"shard{index}.db{suffix}").unlink(missing_ok=True)
    return [f"sqlite:///{directory.resolve()}/shard{index}.db" for index in range(count)]


def make_certificates(directory: Path) -> Path:
    """``scripts/make_certs.py --out directory`` (``make certs``): a CA, the server's certificate
    and one client certificate per role; returns ``directory``."""
    from tests.support.engines import REPOSITORY

    directory.mkdir(parents=True, exist_ok=True)
    script = REPOSITORY / "scripts" / "make_certs.py"
    subprocess.run(
        [sys.executable, str(script), "--out", str(directory)],
        check=True,
        capture_output=True,
        cwd=REPOSITORY,
        timeout=120,
    )
    return directory


@contextmanager
def engine_process(
    shard_urls: list[str] | None,
    log_path: Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    cwd: Path | None = None,
    mtls_certificates: Path | None = None,
) -> Iterator[EngineProcess]:
    """``python server.py`` on ``shard_urls``; None: with ``COFFER_SHARDS`` unset, i.e. on the
    embedded SQLite default (``var/shard*.db`` under ``cwd``, engine/config.py).

    With ``mtls_certificates`` (a :func:`make_certificates` directory) the engine runs with
    ``COFFER_AUTH=mtls``: its port demands a client certificate, so the health wait goes to the
    probe port (``COFFER_PROBE_LISTEN``, TLS without one)."""
    from tests.support.engines import REPOSITORY, EngineProcess, wait_serving
    from tests.support.servers import free_port

    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {"COFFER_SHARDS": "" if shard_urls is None else ",".join(shard_urls)}
    environment["COFFER_WORKERS"] = str(workers)
    if threads is not None:
        environment["COFFER_WORKER_THREADS"] = environment["COFFER_POOL_SIZE"] = str(threads)
    probe_port = 0
    if mtls_certificates is not None:
        probe_port = free_port()
        environment |= {
            "COFFER_AUTH": "mtls",
            "COFFER_TLS_CERT": str(mtls_certificates / "server.pem"),
            "COFFER_TLS_KEY": str(mtls_certificates / "server.key"),
            "COFFER_TLS_CLIENT_CA": str(mtls_certificates / CA_FILE),
            "COFFER_PROBE_LISTEN": f"127.0.0.1:{probe_port}",
        }
    engine = EngineProcess(
        environment, log_path=log_path.resolve(), cwd=cwd or REPOSITORY, wait=mtls_certificates is None
    )
    try:
        if mtls_certificates is not None:
            ca = grpc.ssl_channel_credentials((mtls_certificates / CA_FILE).read_bytes())
            wait_serving(f"localhost:{probe_port}", credentials=ca)
        yield engine
    finally:
        if engine.process.poll() is None:
            engine.terminate()


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parents() -> Mapping[int, int]:
    """pid -> parent pid of every process now alive."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields is not None:
                parents[int(entry.name)] = int(fields[_STAT_PPID])
    return parents


def _children(pid: int) -> list[int]:
    return [child for child, parent in _parents().items() if parent == pid]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the engine's spawned workers and their helpers)."""
    parents = _parents()
    tree, frontier = [pid], [pid]
    while frontier and len(tree) < MAX_TREE_PROCESSES:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree[:MAX_TREE_PROCESSES]


def cpu_tree_seconds(pid: int) -> dict[int, float]:
    """user + system CPU seconds of each live process of the tree under ``pid``."""
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields is not None:
            seconds[member] = (int(fields[_STAT_UTIME]) + int(fields[_STAT_STIME])) / ticks_per_second
    return seconds


class CpuMeter:
    """CPU the process tree under ``pid`` spends between :meth:`start` and :meth:`stop` (a
    :class:`clients.loadtest.runner.DriveHook`). Summed per process: one that starts in between
    counts from zero; one that exits in between is lost (the engine's workers live throughout)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seconds = 0.0
        self._began: dict[int, float] = {}

    def start(self) -> None:
        self._began = cpu_tree_seconds(self.pid)

    def stop(self) -> None:
        ended = cpu_tree_seconds(self.pid)
        self.seconds = sum(value - self._began.get(member, 0.0) for member, value in ended.items())


def rss_tree_mb(pid: int) -> float | None:
    """RSS of a process and its children (the engine's worker processes), in MiB."""
    own = rss_mb(pid)
    if own is None:
        return None
    return own + sum(rss_mb(child) or 0.0 for child in _children(pid))


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB, from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every 100 ms in a background thread; ``max_mb`` is the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_tree_mb(self.pid)
            if value is not None:
                self.max_mb = max(self.max_mb, value)
                self.samples += 1
            self._stop.wait(RSS_SAMPLE_INTERVAL_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
