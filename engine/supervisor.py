"""The parent of a multi-worker engine (``COFFER_WORKERS > 1``): claims the port, has the shards
prepared once, starts the workers, forwards SIGTERM/SIGINT to them and exits when they have all
exited; if one exits on its own, the others are stopped too (a supervisor restarts the whole).

Light on purpose: it imports the standard library, :mod:`engine.config`, :mod:`engine.process_log`
and :mod:`engine.startup` only, never gRPC, SQLAlchemy or a database driver, so it holds a few MB
of memory rather than a worker's ~90 (docs/performance.md "Memory"). Everything that needs those
runs in child processes of :mod:`engine.worker` (``python -m``, not multiprocessing: that would
add its resource tracker process): the one-time preparation (wait for the shards, migrate) in a
short-lived child, then one process per worker. Each child reads the configuration itself from
the environment it inherits.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.config import Settings
from engine.startup import (
    EXIT_STARTUP_FAILED,
    StartupFailure,
    check_listen_allowed,
    check_port_free,
    port_lock,
    split_listen,
)

__all__ = [
    "PREPARE_FLAG",
    "WORKER_FLAG",
    "WORKER_MALLOC_ARENAS",
    "WORKER_MODULE",
    "run_workers",
]

logger = logging.getLogger("coffer")

#: The module the children run (``python -m``); named, not imported: importing it loads gRPC.
WORKER_MODULE = "engine.worker"
PREPARE_FLAG = "--prepare"
WORKER_FLAG = "--worker"
#: How often the supervisor looks for a worker that exited.
WORKER_POLL_SECONDS = 0.5
#: glibc malloc arenas per worker process. glibc's default (8 per core) gives each of a worker's
#: threads (event loop, use-case pool, group-commit writers) an arena of its own, each holding on
#: to freed memory; two arenas measured ~25% less resident memory under the bench's load, with
#: no throughput cost (docs/performance.md "Memory"). An operator's own setting wins.
WORKER_MALLOC_ARENAS = "2"
#: The directory holding the engine package, so ``python -m engine.worker`` works from any cwd.
_REPOSITORY = Path(__file__).resolve().parent.parent


def _child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    search_path = [str(_REPOSITORY), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(search_path)
    # Read by glibc when each child starts, so it is in the environment the child starts with.
    environment.setdefault("MALLOC_ARENA_MAX", WORKER_MALLOC_ARENAS)
    return environment


class _Children:
    """The child processes of the moment, and whether a signal asked everything to stop."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self._environment = _child_environment()

    def start(self, *arguments: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, *arguments], env=self._environment)
        self.processes.append(process)
        if self.stopping:  # the signal came while this one was being started
            process.terminate()
        return process

    def stop(self, _signal_number: int = signal.SIGTERM, _frame: object = None) -> None:
        """SIGTERM to every child still running (the SIGTERM/SIGINT handler)."""
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()

    def any_running(self) -> bool:
        # Every child is polled (any() would stop at the first running one), so each exit is reaped.
        running = [process for process in self.processes if process.poll() is None]
        return bool(running)


def _prepare(children: _Children) -> int:
    """The shards waited for and migrated once, in a short-lived child; its exit status."""
    status = children.start(PREPARE_FLAG).wait()
    if status < 0:
        # Killed by a signal before it could say why itself (it prints its own failures).
        reason = "stopped by a signal" if children.stopping else f"killed by signal {-status}"
        print(f"coffer: {reason} while preparing the shards", file=sys.stderr)
    return EXIT_STARTUP_FAILED if status else 0


def _supervise(settings: Settings, children: _Children) -> int:
    workers = [children.start(WORKER_FLAG, str(index)) for index in range(settings.workers)]
    exit_status = 0
    while True:
        running = children.any_running()
        for index, worker in enumerate(workers):
            if not children.stopping and worker.returncode is not None:
                logger.error("worker coffer-%d exited with %s; stopping the others", index, worker.returncode)
                exit_status = abs(worker.returncode) or EXIT_STARTUP_FAILED
                children.stop()
        if not running:
            return exit_status
        time.sleep(WORKER_POLL_SECONDS)


def run_workers(settings: Settings) -> int:
    """``COFFER_WORKERS`` engine processes on one port; the exit status (0 after SIGTERM/SIGINT,
    :data:`EXIT_STARTUP_FAILED` after one line on stderr saying why start-up failed, a worker's
    status when one exited on its own)."""
    children = _Children()
    signal.signal(signal.SIGTERM, children.stop)
    signal.signal(signal.SIGINT, children.stop)
    try:
        check_listen_allowed(settings)
        _host, port = split_listen(settings.listen)
        if port == 0:
            raise StartupFailure("COFFER_WORKERS > 1 needs a fixed port in COFFER_LISTEN")
        with port_lock(port):
            check_port_free(settings.listen)
            status = _prepare(children)
            if status or children.stopping:
                return status
            return _supervise(settings, children)
    except StartupFailure as failure:
        print(f"coffer: {failure}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
