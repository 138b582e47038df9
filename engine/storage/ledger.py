"""Appending transactions and their entries to the ledger (never updated, never deleted)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from engine.domain.ledger import Entry, TransactionType, check_balanced
from engine.storage.schema import ledger_entries, ledger_transactions

# Built once: a statement object built per call costs a cache-key walk on every execution.
_INSERT_TRANSACTION = ledger_transactions.insert()
_INSERT_ENTRIES = ledger_entries.insert()


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
    check_balanced(entries)
    # Parameters rather than .values(): the compiled INSERT is reused without rebuilding it.
    connection.execute(
        _INSERT_TRANSACTION,
        dict(
            transaction_id=transaction_id,
            user_id=user_id,
            type=transaction_type.value,
            idempotency_key=idempotency_key,
            charge_id=charge_id,
            memo=memo,
            created_at_us=now_us,
        )
    )
    if entries:
        connection.execute(
            _INSERT_ENTRIES,
            [
                {
                    "transaction_id": transaction_id,
                    "account": entry.account,
                    "user_id": entry.user_id,
                    "asset": entry.asset.value,
                    "bucket": entry.bucket.value if entry.bucket else "",
                    "instrument": entry.instrument,
                    "amount": entry.amount,
                }
                for entry in entries
            ],
        )
