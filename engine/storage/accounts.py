"""Wallet (account) rows: created by the first Issue, frozen by Admin or risk control."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from engine.domain.errors import CofferError, Reason
from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import accounts


def ensure_account(connection: Connection, user_id: int, virtual_shard: int, now_us: int) -> None:
    insert_or_ignore(
        connection,
        accounts,
        {
            "user_id": user_id,
            "virtual_shard": virtual_shard,
            "frozen": False,
            "frozen_reason": "",
            "points_debt": 0,
            "created_at_us": now_us,
        },
    )


_FROZEN = select(accounts.c.frozen).where(accounts.c.user_id == bindparam("p_user_id"))


def is_frozen(connection: Connection, user_id: int) -> bool:
    return bool(connection.execute(_FROZEN, {"p_user_id": user_id}).scalar_one_or_none())


def frozen_account(user_id: int) -> CofferError:
    return CofferError(
        Reason.ACCOUNT_FROZEN,
        f"the wallet of user {user_id} is frozen",
        metadata={"user_id": str(user_id)},
    )


def require_not_frozen(connection: Connection, user_id: int) -> None:
    if is_frozen(connection, user_id):
        raise frozen_account(user_id)


def set_frozen(connection: Connection, user_id: int, frozen: bool, reason: str) -> None:
    connection.execute(
        accounts.update()
        .where(accounts.c.user_id == user_id)
        .values(frozen=frozen, frozen_reason=reason if frozen else "")
    )


def read_frozen_reason(connection: Connection, user_id: int) -> str:
    """The reason recorded with the account's freeze ("" when it is not frozen)."""
    reason: str = connection.execute(
        select(accounts.c.frozen_reason).where(accounts.c.user_id == user_id)
    ).scalar_one()
    return reason
