"""Throwaway infrastructure for ``make loadtest`` and ``make bench``, run from a checkout of the
repository: a PostgreSQL cluster (tests/support/servers.py), the engine as a child process
(``python server.py``, tests/support/engines.py) and a sampler of the engine's resident memory.

Everything started here is stopped by the context managers, whatever happens in between.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.engines import EngineProcess
    from tests.support.servers import PostgresServer

RSS_SAMPLE_INTERVAL_SECONDS = 0.1


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


@contextmanager
def engine_process(
    shard_urls: list[str], log_path: Path, *, workers: int = 1, threads: int | None = None
) -> Iterator[EngineProcess]:
    from tests.support.engines import EngineProcess

    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = {"COFFER_SHARDS": ",".join(shard_urls), "COFFER_WORKERS": str(workers)}
    if threads is not None:
        environment["COFFER_WORKER_THREADS"] = environment["COFFER_POOL_SIZE"] = str(threads)
    engine = EngineProcess(environment, log_path=log_path)
    try:
        yield engine
    finally:
        if engine.process.poll() is None:
            engine.terminate()


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


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
