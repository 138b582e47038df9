"""The few statements whose spelling differs between PostgreSQL and SQLite."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_or_ignore(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``; True when the row was inserted.

    On PostgreSQL a conflicting row that another transaction has inserted but not committed
    makes this wait for that transaction (bounded by ``lock_timeout``) — how a second request
    with the same idempotency key waits for the first instead of racing it.
    """
    return (
        connection.execute(_insert_or_ignore_statement(connection.dialect.name, table), values).first()
        is not None
    )


@functools.cache
def _insert_or_ignore_statement(dialect_name: str, table: Table) -> Any:
    """Built once per table: values arrive as execution parameters, so nothing is rebuilt per call."""
    module: Any = postgresql if dialect_name == "postgresql" else sqlite
    first_key = next(iter(table.primary_key.columns))
    # RETURNING rather than rowcount: the driver may not report a rowcount for INSERT.
    return module.insert(table).on_conflict_do_nothing().returning(first_key)


def for_update(connection: Connection) -> bool:
    """Whether ``SELECT ... FOR UPDATE`` means anything here (SQLite locks the whole file)."""
    return connection.dialect.name == "postgresql"
