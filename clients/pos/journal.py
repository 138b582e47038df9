"""The till's local journal: every mutating request is written here (with its idempotency key and
its serialized bytes) and committed to disk BEFORE it is sent, and marked finished after the
answer is recorded. An entry still ``pending`` at start-up is a request whose answer the till
never recorded (it crashed, lost power, or the engine was unreachable); it is re-sent with the
same key, so the engine applies it at most once.

One SQLite file, ``synchronous=FULL`` (every commit is fsync'd), and an exclusive ``flock`` on a
side file so two CLI processes never drive the same journal at once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PENDING = "pending"
DONE = "done"
REFUSED = "refused"

#: Bounds: how many pending entries one start-up re-sends, and how many rows ``journal`` lists.
MAX_RECOVERY_ENTRIES = 1000
MAX_LISTED_ENTRIES = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    rpc TEXT NOT NULL,
    command TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    request BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'refused')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    finished_at REAL,
    response BLOB,
    reason TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT ''
)
"""


class JournalBusy(RuntimeError):
    """Another process holds the journal."""


@dataclass(frozen=True)
class Entry:
    seq: int
    idempotency_key: str
    rpc: str
    command: str
    summary: str
    request: bytes
    state: str
    attempts: int
    created_at: float
    finished_at: float | None
    response: bytes | None
    reason: str
    message: str


def default_path() -> Path:
    override = os.environ.get("COFFER_POS_JOURNAL")
    if override:
        return Path(override).expanduser()
    return Path.home() / ".coffer-pos" / "journal.db"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_file: IO[bytes] | None = open(f"{path}.lock", "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise JournalBusy(f"another coffer-pos is using the journal {path}") from None
        # Autocommit mode: every write below is its own transaction, durable when it returns.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(_SCHEMA)

    def close(self) -> None:
        self.db.close()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, *, idempotency_key: str, rpc: str, command: str, summary: str, request: bytes) -> int:
        """Write a request as pending; returns when it is on disk."""
        cursor = self.db.execute(
            "INSERT INTO entries (idempotency_key, rpc, command, summary, request, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (idempotency_key, rpc, command, summary, request, PENDING, time.time()),
        )
        seq = cursor.lastrowid
        if seq is None:  # pragma: no cover - sqlite always sets it for an INSERT
            raise RuntimeError("journal insert returned no row id")
        return seq

    def attempt(self, seq: int) -> None:
        self.db.execute("UPDATE entries SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def finish(self, seq: int, response: bytes) -> None:
        self.db.execute(
            "UPDATE entries SET state = ?, response = ?, finished_at = ? WHERE seq = ? AND state = ?",
            (DONE, response, time.time(), seq, PENDING),
        )

    def refuse(self, seq: int, reason: str, message: str) -> None:
        """The engine refused the request: it left no trace, so nothing is re-sent."""
        self.db.execute(
            "UPDATE entries SET state = ?, reason = ?, message = ?, finished_at = ? "
            "WHERE seq = ? AND state = ?",
            (REFUSED, reason, message, time.time(), seq, PENDING),
        )

    def pending(self, limit: int = MAX_RECOVERY_ENTRIES) -> list[Entry]:
        return self._select("WHERE state = ? ORDER BY seq LIMIT ?", (PENDING, limit))

    def recent(self, limit: int = 20) -> list[Entry]:
        rows = self._select("ORDER BY seq DESC LIMIT ?", (min(limit, MAX_LISTED_ENTRIES),))
        return list(reversed(rows))

    def get(self, seq: int) -> Entry:
        rows = self._select("WHERE seq = ?", (seq,))
        if not rows:
            raise KeyError(seq)
        return rows[0]

    def _select(self, where: str, parameters: tuple[object, ...]) -> list[Entry]:
        cursor = self.db.execute(
            "SELECT seq, idempotency_key, rpc, command, summary, request, state, attempts, created_at, "
            f"finished_at, response, reason, message FROM entries {where}",
            parameters,
        )
        return [Entry(*row) for row in cursor.fetchall()]
