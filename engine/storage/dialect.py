"""The few statements whose spelling differs between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_or_ignore(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING``; True when the row was inserted.

    On PostgreSQL a conflicting row that another transaction has inserted but not committed
    makes this wait for that transaction (bounded by ``lock_timeout``) — how a second request
    with the same idempotency key waits for the first instead of racing it.
    """
    module: Any = postgresql if connection.dialect.name == "postgresql" else sqlite
    first_key = next(iter(table.primary_key.columns))
    # RETURNING rather than rowcount: the driver may not report a rowcount for INSERT.
    statement = module.insert(table).values(**values).on_conflict_do_nothing().returning(first_key)
    return connection.execute(statement).first() is not None


def for_update(connection: Connection) -> bool:
    """Whether ``SELECT ... FOR UPDATE`` means anything here (SQLite locks the whole file)."""
    return connection.dialect.name == "postgresql"
