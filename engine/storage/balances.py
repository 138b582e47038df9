"""Balance rows. Every change is one conditional statement (CONTRACT §1, seed 000): the
``WHERE`` clause refuses an overdraft, so no read-then-write race can take a balance below zero.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from engine.domain.errors import CofferError, Reason
from engine.domain.money import MAX_BALANCE_FEN, Asset, balance_limit_error
from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import balances


def insufficient_funds(asset: Asset, needed: int) -> CofferError:
    return CofferError(
        Reason.INSUFFICIENT_FUNDS,
        f"not enough {asset.value} for {needed}",
        metadata={"asset": asset.value, "needed": str(needed)},
    )


def credit_available(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Add to ``available``, creating the row; refuses to pass the balance limit."""
    if amount == 0:
        return
    insert_or_ignore(
        connection,
        balances,
        {"user_id": user_id, "asset": asset.value, "available": 0, "held": 0},
    )
    updated = connection.execute(
        balances.update()
        .where(
            balances.c.user_id == user_id,
            balances.c.asset == asset.value,
            balances.c.available <= MAX_BALANCE_FEN - amount,
        )
        .values(available=balances.c.available + amount)
    )
    if updated.rowcount != 1:
        raise balance_limit_error(asset.value)


def debit_available(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Take from ``available``; INSUFFICIENT_FUNDS (naming the asset) when it does not hold it."""
    if amount == 0:
        return
    updated = connection.execute(
        balances.update()
        .where(
            balances.c.user_id == user_id,
            balances.c.asset == asset.value,
            balances.c.available >= amount,
        )
        .values(available=balances.c.available - amount)
    )
    if updated.rowcount != 1:
        raise insufficient_funds(asset, amount)


def hold(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Move ``amount`` from ``available`` to ``held`` (an authorization)."""
    if amount == 0:
        return
    updated = connection.execute(
        balances.update()
        .where(
            balances.c.user_id == user_id,
            balances.c.asset == asset.value,
            balances.c.available >= amount,
        )
        .values(available=balances.c.available - amount, held=balances.c.held + amount)
    )
    if updated.rowcount != 1:
        raise insufficient_funds(asset, amount)


def release(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Move ``amount`` from ``held`` back to ``available`` (a void, an expiry, a partial capture)."""
    _change_held(connection, user_id, asset, amount, back_to_available=True)


def settle_held(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Take ``amount`` out of ``held`` for good (a capture)."""
    _change_held(connection, user_id, asset, amount, back_to_available=False)


def _change_held(
    connection: Connection, user_id: int, asset: Asset, amount: int, *, back_to_available: bool
) -> None:
    if amount == 0:
        return
    values = {"held": balances.c.held - amount}
    if back_to_available:
        values["available"] = balances.c.available + amount
    updated = connection.execute(
        balances.update()
        .where(
            balances.c.user_id == user_id,
            balances.c.asset == asset.value,
            balances.c.held >= amount,
        )
        .values(**values)
    )
    if updated.rowcount != 1:
        # Held amounts are recorded per charge leg; a shortfall here is a bug, never a user error.
        raise RuntimeError(f"held {asset.value} of user {user_id} is short of {amount}")


def read_balances(connection: Connection, user_id: int) -> dict[Asset, tuple[int, int]]:
    rows = connection.execute(
        select(balances.c.asset, balances.c.available, balances.c.held).where(balances.c.user_id == user_id)
    ).all()
    return {Asset(row.asset): (row.available, row.held) for row in rows}
