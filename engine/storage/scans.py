"""The keyset-paged scan every expiry batch starts with (due keys after ``after``, at most
``limit``), and the bounded count-and-total a dry run of the job reads instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, literal, select

__all__ = ["DueSummary", "due_keys", "due_summary"]


@dataclass(frozen=True)
class DueSummary:
    #: Due rows counted (at most the ``cap`` the summary was asked for).
    count: int
    #: The sum of the summarised value column over those rows (0 when there is no value column).
    total: int


def due_keys(connection: Connection, key: Any, conditions: list[Any], after: str, limit: int) -> list[str]:
    """Up to ``limit`` values of the ``key`` column meeting ``conditions`` that sort after ``after``."""
    return list(
        connection.execute(select(key).where(*conditions, key > after).order_by(key).limit(limit)).scalars()
    )


def due_summary(
    connection: Connection, key: Any, value: Any | None, conditions: list[Any], cap: int
) -> DueSummary:
    """Count and total of ``value`` over the first ``cap`` rows (in ``key`` order) meeting
    ``conditions``: the rows :func:`due_keys` pages through, read once and bounded, never locked."""
    due = (
        select(key.label("key"), (literal(0) if value is None else value).label("value"))
        .where(*conditions)
        .order_by(key)
        .limit(cap)
        .subquery()
    )
    count, total = connection.execute(select(func.count(), func.coalesce(func.sum(due.c.value), 0))).one()
    return DueSummary(count=int(count), total=int(total))
