"""Payment-callback dedupe on ``(user, payment_channel, channel_txn_id)`` (CONTRACT §1).

Shared by top-ups and gift cards sold through a payment channel: the first request claims the
channel transaction inside its own database transaction; a retry under a new idempotency key gets
the original answer with ``replayed = true`` when kind and amount match, else
CHANNEL_TXN_CONFLICT.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection

from engine.domain.errors import CofferError, Reason
from engine.domain.results import IssueResult
from engine.domain.serialization import loads
from engine.storage.channel_transactions import (
    ChannelTransaction,
    insert_channel_transaction,
    read_channel_transaction,
)
from engine.storage.idempotency import read_response

__all__ = ["claim_channel_transaction", "replay_channel_transaction"]


def claim_channel_transaction(
    connection: Connection,
    *,
    user_id: int,
    payment_channel: str,
    channel_txn_id: str,
    kind: str,
    amount: int,
    idempotency_key: str,
    transaction_id: str,
    now_us: int,
) -> IssueResult | None:
    """Claim the channel transaction for this request: ``None`` when claimed, else the original
    answer (replayed) — or CHANNEL_TXN_CONFLICT when it credited another kind or amount."""
    claim = ChannelTransaction(
        user_id=user_id,
        payment_channel=payment_channel,
        channel_txn_id=channel_txn_id,
        kind=kind,
        amount=amount,
        idempotency_key=idempotency_key,
        transaction_id=transaction_id,
        created_at_us=now_us,
    )
    claimed = insert_channel_transaction(connection, claim)
    if claimed:
        return None
    return replay_channel_transaction(connection, user_id, payment_channel, channel_txn_id, kind, amount)


def replay_channel_transaction(
    connection: Connection, user_id: int, payment_channel: str, channel_txn_id: str, kind: str, amount: int
) -> IssueResult:
    """A payment callback retried under a new key: the original answer, or a conflict."""
    original = read_channel_transaction(connection, user_id, payment_channel, channel_txn_id)
    if original.amount != amount or original.kind != kind:
        raise CofferError(
            Reason.CHANNEL_TXN_CONFLICT,
            f"{payment_channel} transaction {channel_txn_id} was already credited with another amount",
            metadata={
                "payment_channel": payment_channel,
                "channel_txn_id": channel_txn_id,
                "transaction_id": original.transaction_id,
            },
        )
    response = read_response(connection, user_id=user_id, key=original.idempotency_key)
    return dataclasses.replace(loads(IssueResult, response), replayed=True)
