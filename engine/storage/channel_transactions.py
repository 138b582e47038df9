"""Payment-channel transactions already credited: one row per ``(user, payment_channel,
channel_txn_id)``, naming the request (idempotency key) that credited it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import channel_transactions

__all__ = ["ChannelTransaction", "insert_channel_transaction", "read_channel_transaction"]


@dataclass(frozen=True)
class ChannelTransaction:
    """A payment-channel transaction credited by the request under ``idempotency_key``."""

    user_id: int
    payment_channel: str
    channel_txn_id: str
    kind: str
    amount: int
    idempotency_key: str
    transaction_id: str
    created_at_us: int


def insert_channel_transaction(connection: Connection, claim: ChannelTransaction) -> bool:
    """Claim the channel transaction; False when another request claimed it before."""
    return insert_or_ignore(connection, channel_transactions, dataclasses.asdict(claim))


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_CHANNEL_TRANSACTION = select(channel_transactions).where(
    channel_transactions.c.user_id == bindparam("p_user_id"),
    channel_transactions.c.payment_channel == bindparam("p_payment_channel"),
    channel_transactions.c.channel_txn_id == bindparam("p_channel_txn_id"),
)


def read_channel_transaction(
    connection: Connection, user_id: int, payment_channel: str, channel_txn_id: str
) -> Row[Any]:
    """The claimed channel transaction (it must exist)."""
    return connection.execute(
        _CHANNEL_TRANSACTION,
        {"p_user_id": user_id, "p_payment_channel": payment_channel, "p_channel_txn_id": channel_txn_id},
    ).one()
