"""The points a user owes (``accounts.points_debt``): claw-backs the user's lots could not cover,
paid first out of the next grant."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select

from engine.domain.errors import require
from engine.storage.schema import accounts

__all__ = ["add_points_debt", "lock_points_debt", "pay_points_debt"]


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_LOCK_DEBT = (
    select(accounts.c.points_debt).where(accounts.c.user_id == bindparam("p_user_id")).with_for_update()
)
_PAY_DEBT = (
    accounts.update()
    .where(accounts.c.user_id == bindparam("p_user_id"), accounts.c.points_debt >= bindparam("p_points"))
    .values(points_debt=accounts.c.points_debt - bindparam("p_points"))
)
_ADD_DEBT = (
    accounts.update()
    .where(accounts.c.user_id == bindparam("p_user_id"))
    .values(points_debt=accounts.c.points_debt + bindparam("p_points"))
)


def lock_points_debt(connection: Connection, user_id: int) -> int:
    """The user's points debt, its account row locked (the row must exist)."""
    debt = connection.execute(_LOCK_DEBT, {"p_user_id": user_id}).scalar_one()
    return int(debt)


def pay_points_debt(connection: Connection, user_id: int, points: int) -> None:
    updated = connection.execute(_PAY_DEBT, {"p_user_id": user_id, "p_points": points})
    require(updated.rowcount == 1, "the locked points debt covers what is paid")


def add_points_debt(connection: Connection, user_id: int, points: int) -> None:
    connection.execute(_ADD_DEBT, {"p_user_id": user_id, "p_points": points})
