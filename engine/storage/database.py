"""Creating SQLAlchemy engines for one physical shard: PostgreSQL (psycopg 3) or SQLite.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so that writers queue for the lock up front instead of failing on upgrade.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "coffer_read_only"


#: Locks a journal-mode change may not wait for with the busy handler.
_LOCKED = "database is locked"


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and _LOCKED in str(error)


def _enable_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (a setting of the file, so only the first connection
    changes it). Switching needs a lock SQLite does not wait for with its busy handler: two
    processes opening a fresh file at once saw "database is locked" at once. So: retry for
    as long as a busy wait would last, and not at all once the file is in WAL mode."""
    for attempt in Retrying(
        stop=stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        wait=wait_random(0.005, 0.05),
        retry=retry_if_exception(_is_locked),
        reraise=True,
    ):
        with attempt:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")


def create_shard_engine(
    url: str, *, pool_size: int, lock_timeout_ms: int, statement_timeout_ms: int
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url, pool_size=pool_size)
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise ValueError(f"use postgresql+psycopg:// (psycopg 3), not {parsed.drivername}")
        if parsed.get_driver_name() == "":
            parsed = parsed.set(drivername="postgresql+psycopg")
        options = f"-c lock_timeout={lock_timeout_ms} -c statement_timeout={statement_timeout_ms}"
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=30,
            pool_pre_ping=False,
            # psycopg's own statement preparation stays off on pooled connections: it answers a
            # ROLLBACK (the pool's reset of a returned connection included) with DEALLOCATE ALL,
            # which would also drop the statements engine.storage.pipeline prepares once per
            # connection. A group-commit writer turns it on for the connection it holds
            # (engine.storage.pipeline.prepare_after_uses).
            connect_args={"options": options, "connect_timeout": 10, "prepare_threshold": None},
        )
    raise ValueError(f"unsupported shard database {parsed.drivername!r}")


def _create_sqlite_engine(url: str, *, pool_size: int) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transaction boundaries.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front; readers (see read_only) run beside them in WAL.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def read_only(engine: Engine) -> Connection:
    """A connection for queries that write nothing: on SQLite it does not take the write lock,
    so reads proceed beside the one writer (WAL); on PostgreSQL it is an ordinary connection."""
    return engine.connect().execution_options(**{READ_ONLY_OPTION: True})
