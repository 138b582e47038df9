"""The multi-worker engine's parent (``COFFER_WORKERS > 1``, engine/supervisor.py) as a real
process tree: light (no gRPC or SQLAlchemy in it), workers started with MALLOC_ARENA_MAX, and a
worker that dies on its own takes the whole engine down with a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.engines import REPOSITORY, EngineProcess

#: Packages the parent must never load: they are what makes a worker ~90 MB.
HEAVY_PACKAGES = ("grpc", "sqlalchemy", "psycopg", "google", "cryptography", "alembic", "coffer")
EXIT_TIMEOUT_SECONDS = 30.0


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def _sqlite_shards(directory: Path) -> str:
    return ",".join(f"sqlite:///{directory}/s{index}.db" for index in range(2))


def test_the_supervisor_and_the_start_up_checks_load_no_heavy_package() -> None:
    probe = (
        "import sys, engine.supervisor, engine.startup, engine.process_log\n"
        f"print(sorted({{name.split('.')[0] for name in sys.modules}} & set({HEAVY_PACKAGES!r})))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.strip() == "[]", completed.stdout


def test_workers_start_with_two_malloc_arenas_and_one_dying_stops_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)  # EngineProcess passes os.environ on
    engine = EngineProcess(
        {"COFFER_SHARDS": _sqlite_shards(tmp_path), "COFFER_WORKERS": "2"}, log_path=tmp_path / "engine.log"
    )
    try:
        workers = _children(engine.process.pid)
        assert len(workers) == 2, workers
        for worker in workers:
            assert _environment_of(worker).get("MALLOC_ARENA_MAX") == "2"
        os.kill(workers[0], signal.SIGKILL)
        status = engine.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        assert status == signal.SIGKILL, status
        # The parent exits only after it has stopped and reaped the other worker.
        assert not Path(f"/proc/{workers[1]}").exists()
    finally:
        if engine.process.poll() is None:
            engine.terminate()
    assert "worker coffer-0 exited with -9; stopping the others" in (tmp_path / "engine.log").read_text()
