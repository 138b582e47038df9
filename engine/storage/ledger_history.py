"""Reading a user's ledger history, newest first, a keyset page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select

from engine.storage.schema import ledger_entries, ledger_transactions

__all__ = ["read_entries", "read_transactions"]


def read_transactions(
    connection: Connection, user_id: int, limit: int, before: tuple[int, str] | None
) -> list[Row[Any]]:
    """Up to ``limit`` of the user's transactions, newest first (``created_at_us``, then id);
    with ``before = (created_at_us, transaction_id)`` only those that sort after that one."""
    query = select(ledger_transactions).where(ledger_transactions.c.user_id == user_id)
    if before is not None:
        created, transaction_id = before
        query = query.where(
            or_(
                ledger_transactions.c.created_at_us < created,
                and_(
                    ledger_transactions.c.created_at_us == created,
                    ledger_transactions.c.transaction_id < transaction_id,
                ),
            )
        )
    query = query.order_by(
        ledger_transactions.c.created_at_us.desc(), ledger_transactions.c.transaction_id.desc()
    ).limit(limit)
    return list(connection.execute(query).all())


def read_entries(connection: Connection, transaction_ids: Sequence[str]) -> list[Row[Any]]:
    """The entries of these transactions, in the order they were written."""
    if not transaction_ids:
        return []
    return list(
        connection.execute(
            select(ledger_entries)
            .where(ledger_entries.c.transaction_id.in_(list(transaction_ids)))
            .order_by(ledger_entries.c.entry_id)
        ).all()
    )
