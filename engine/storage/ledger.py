"""Appending transactions and their entries to the ledger (never updated, never deleted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from engine.domain.errors import require
from engine.domain.ledger import Entry, TransactionType, check_balanced
from engine.storage.bulk import insert_rows, insert_rows_query
from engine.storage.pipeline import Query
from engine.storage.schema import ledger_entries, ledger_transactions


@dataclass(frozen=True)
class TransactionRecord:
    """One ledger transaction and its entries, as :func:`append_transactions` writes it."""

    transaction_id: str
    user_id: int
    transaction_type: TransactionType
    entries: Sequence[Entry]
    now_us: int
    idempotency_key: str = ""
    charge_id: str = ""
    memo: str = ""


def append_transaction(
    connection: Connection,
    *,
    transaction_id: str,
    user_id: int,
    transaction_type: TransactionType,
    entries: Sequence[Entry],
    now_us: int,
    idempotency_key: str = "",
    charge_id: str = "",
    memo: str = "",
) -> None:
    """One balanced transaction and its entries: :func:`append_transactions` of one (two
    statements; on PostgreSQL the entries travel as arrays, not as a pipeline of inserts)."""
    append_transactions(
        connection,
        [
            TransactionRecord(
                transaction_id=transaction_id,
                user_id=user_id,
                transaction_type=transaction_type,
                entries=entries,
                now_us=now_us,
                idempotency_key=idempotency_key,
                charge_id=charge_id,
                memo=memo,
            )
        ],
    )


def append_transactions(connection: Connection, records: Sequence[TransactionRecord]) -> None:
    """:func:`append_transaction` for many transactions: two statements in all (the transaction
    rows, then every entry), each transaction refused unless balanced."""
    if not records:
        return
    transactions, entries = _columns(records)
    insert_rows(connection, ledger_transactions, transactions)
    insert_rows(connection, ledger_entries, entries)


def append_transactions_queries(records: Sequence[TransactionRecord]) -> list[Query[None]]:
    """:func:`append_transactions` as two statements of a pipeline (PostgreSQL)."""
    require(bool(records), "at least one ledger transaction to append")
    transactions, entries = _columns(records)
    return [insert_rows_query(ledger_transactions, transactions), insert_rows_query(ledger_entries, entries)]


def _columns(records: Sequence[TransactionRecord]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The rows of ``records`` and of their entries, each transaction checked balanced first."""
    for record in records:
        check_balanced(record.entries)
    transactions: dict[str, list[Any]] = {
        "transaction_id": [record.transaction_id for record in records],
        "user_id": [record.user_id for record in records],
        "type": [record.transaction_type.value for record in records],
        "idempotency_key": [record.idempotency_key for record in records],
        "charge_id": [record.charge_id for record in records],
        "memo": [record.memo for record in records],
        "created_at_us": [record.now_us for record in records],
    }
    lines = [(record.transaction_id, entry) for record in records for entry in record.entries]
    entries: dict[str, list[Any]] = {
        "transaction_id": [transaction_id for transaction_id, _ in lines],
        "account": [entry.account for _, entry in lines],
        "user_id": [entry.user_id for _, entry in lines],
        "asset": [entry.asset.value for _, entry in lines],
        "bucket": [entry.bucket.value if entry.bucket else "" for _, entry in lines],
        "instrument": [entry.instrument for _, entry in lines],
        "amount": [entry.amount for _, entry in lines],
    }
    return transactions, entries
