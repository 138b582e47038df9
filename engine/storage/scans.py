"""The keyset-paged scan every expiry batch starts with: due keys after ``after``, at most ``limit``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

__all__ = ["due_keys"]


def due_keys(connection: Connection, key: Any, conditions: list[Any], after: str, limit: int) -> list[str]:
    """Up to ``limit`` values of the ``key`` column meeting ``conditions`` that sort after ``after``."""
    return list(
        connection.execute(select(key).where(*conditions, key > after).order_by(key).limit(limit)).scalars()
    )
