"""Points lots and the draws charges made on them: every statement on them.

Drawing FIFO for a charge, holding and settling for an authorization, returning to the same
lots on refund or release, granting, clawing back and expiring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BindParameter, Connection, Row, Table, Update, bindparam, select

from engine.domain.errors import InvariantViolation, require
from engine.domain.points_fifo import Lot, LotDraw
from engine.storage.bulk import Columns, insert_rows, row_count
from engine.storage.scans import DueSummary, due_keys, due_summary
from engine.storage.schema import lot_draws, points_lots

__all__ = [
    "LIVE_LOTS",
    "MAX_LOTS_PER_SPEND",
    "apply_draws",
    "charge_draws",
    "close_expired_lot",
    "due_lot_ids",
    "due_lots_summary",
    "held_draws",
    "insert_lot",
    "insert_lots",
    "lock_lot",
    "lot_owner",
    "mark_draw_returned",
    "read_spendable_lots",
    "refill_lot",
    "release_to_lot",
    "settle_lot_hold",
    "take_from_lot",
    "take_held_from_draw",
]

#: A user's live lots read for one spend; more than this many lots is refused as a bug signal.
MAX_LOTS_PER_SPEND = 10_000


#: A user's live lots — points left and not past their expiry — with what a spend and a listing
#: read of them: the one definition a spend (below) and GetWallet (engine.storage.wallets) share.
LIVE_LOTS = select(
    points_lots.c.lot_id,
    points_lots.c.remaining,
    points_lots.c.expires_at_us,
    points_lots.c.granted_at_us,
).where(
    points_lots.c.user_id == bindparam("p_user_id"),
    points_lots.c.remaining > 0,
    (points_lots.c.expires_at_us.is_(None)) | (points_lots.c.expires_at_us > bindparam("p_now_us")),
)


def _move_points(table: Table, keys: Sequence[str], giver: str | None, **signs: int) -> Update:
    """One conditional UPDATE of a row of ``table`` (found by ``keys``, each bound as
    ``p_<key>``): each bucket named in ``signs`` moves by its sign × ``:p_points``. ``giver``, the
    bucket points leave, must hold them (``giver >= :p_points``): no bucket goes below zero, and a
    row that does not hold them is left alone (rowcount 0). Built once per statement below
    (engine.storage.charges._ADD_LEG_TOTALS says why)."""
    require(all(sign in (-1, 1) for sign in signs.values()), "a bucket moves by +1 or -1 times the points")
    require(giver is None or signs.get(giver) == -1, "the guarded bucket is the one points leave")
    points: BindParameter[Any] = bindparam("p_points")
    conditions = [table.c[key] == bindparam(f"p_{key}") for key in keys]
    if giver is not None:
        conditions.append(table.c[giver] >= points)
    return (
        table.update()
        .where(*conditions)
        .values(
            **{
                bucket: table.c[bucket] + points if sign > 0 else table.c[bucket] - points
                for bucket, sign in signs.items()
            }
        )
    )


_LOT = ("lot_id",)
_DRAW = ("charge_id", "lot_id")
_SPENDABLE_LOTS = LIVE_LOTS.limit(MAX_LOTS_PER_SPEND).with_for_update()
#: A draw out of a lot's ``remaining``: {hold: statement} (an authorization moves it into ``held``).
_DRAW_FROM_LOT = {
    False: _move_points(points_lots, _LOT, "remaining", remaining=-1),
    True: _move_points(points_lots, _LOT, "remaining", remaining=-1, held=+1),
}
#: A draw stops holding points: {returned: statement} (counted as returned when they go back).
_TAKE_HELD_FROM_DRAW = {
    False: _move_points(lot_draws, _DRAW, "held", held=-1),
    True: _move_points(lot_draws, _DRAW, "held", held=-1, returned=+1),
}
_EXPIRY = points_lots.c.expires_at_us
#: The charge's draws still holding points: {latest_first: statement}.
_HELD_DRAWS = {
    latest_first: select(
        lot_draws.c.lot_id, lot_draws.c.held, points_lots.c.expires_at_us, points_lots.c.expired_at_us
    )
    .join(points_lots, points_lots.c.lot_id == lot_draws.c.lot_id)
    .where(lot_draws.c.charge_id == bindparam("p_charge_id"), lot_draws.c.held > 0)
    .order_by(
        *(
            (_EXPIRY.desc().nulls_first(), lot_draws.c.lot_id.desc())
            if latest_first
            else (_EXPIRY.asc().nulls_last(), lot_draws.c.lot_id)
        )
    )
    for latest_first in (False, True)
}
_CHARGE_DRAWS = (
    select(
        lot_draws.c.lot_id,
        lot_draws.c.points,
        lot_draws.c.returned,
        points_lots.c.expires_at_us,
        points_lots.c.expired_at_us,
    )
    .join(points_lots, points_lots.c.lot_id == lot_draws.c.lot_id)
    .where(lot_draws.c.charge_id == bindparam("p_charge_id"))
    # NULLS FIRST: a lot that never expires is the latest-expiring one (SQLite sorts NULL last).
    .order_by(_EXPIRY.desc().nulls_first(), lot_draws.c.lot_id.desc())
)
#: Held points leave the lot: {expired: statement} (back to ``remaining`` unless it expired).
_RELEASE_TO_LOT = {
    False: _move_points(points_lots, _LOT, "held", held=-1, remaining=+1),
    True: _move_points(points_lots, _LOT, "held", held=-1),
}
_MARK_DRAW_RETURNED = _move_points(lot_draws, _DRAW, None, returned=+1)
_REFILL_LOT = _move_points(points_lots, _LOT, None, remaining=+1)
_TAKE_FROM_LOT = _move_points(points_lots, _LOT, "remaining", remaining=-1)
_SETTLE_LOT_HOLD = _move_points(points_lots, _LOT, "held", held=-1)


def read_spendable_lots(connection: Connection, user_id: int, now_us: int) -> list[Lot]:
    rows = connection.execute(_SPENDABLE_LOTS, {"p_user_id": user_id, "p_now_us": now_us}).all()
    return [Lot(row.lot_id, row.remaining, row.expires_at_us, row.granted_at_us) for row in rows]


def apply_draws(connection: Connection, charge_id: str, draws: list[LotDraw], *, hold: bool) -> None:
    """Take the drawn points out of each lot's ``remaining`` (into ``held`` for an authorization)."""
    for draw in draws:
        updated = connection.execute(_DRAW_FROM_LOT[hold], {"p_lot_id": draw.lot_id, "p_points": draw.points})
        if updated.rowcount != 1:
            raise InvariantViolation(f"points lot {draw.lot_id} changed under a locked spend")
    if draws:
        connection.execute(
            lot_draws.insert(),
            [
                {
                    "charge_id": charge_id,
                    "lot_id": draw.lot_id,
                    "points": draw.points,
                    "returned": 0,
                    "held": draw.points if hold else 0,
                }
                for draw in draws
            ],
        )


def held_draws(connection: Connection, charge_id: str, *, latest_first: bool) -> list[Any]:
    """The charge's draws still holding points, with their lots' expiry: earliest expiry first
    (a capture spends those), or latest first (a release refills those)."""
    return list(connection.execute(_HELD_DRAWS[latest_first], {"p_charge_id": charge_id}).all())


def charge_draws(connection: Connection, charge_id: str) -> list[Any]:
    """Every draw of the charge, latest-expiring lot first (a refund refills those first)."""
    return list(connection.execute(_CHARGE_DRAWS, {"p_charge_id": charge_id}).all())


def take_held_from_draw(
    connection: Connection, charge_id: str, lot_id: str, points: int, *, returned: bool
) -> None:
    """The draw stops holding ``points`` (counted as ``returned`` when they go back to the lot)."""
    updated = connection.execute(
        _TAKE_HELD_FROM_DRAW[returned], {"p_charge_id": charge_id, "p_lot_id": lot_id, "p_points": points}
    )
    require(updated.rowcount == 1, f"lot draw {charge_id}/{lot_id} holds {points}")


def settle_lot_hold(connection: Connection, lot_id: str, points: int) -> None:
    """Held points leave the lot for good (a capture)."""
    updated = connection.execute(_SETTLE_LOT_HOLD, {"p_lot_id": lot_id, "p_points": points})
    require(updated.rowcount == 1, f"points lot {lot_id} holds {points}")


def release_to_lot(connection: Connection, lot_id: str, points: int, *, expired: bool) -> None:
    """Held points return to the lot's ``remaining`` — or, if the lot has expired, leave it
    (the caller posts them to ``points_expired``)."""
    updated = connection.execute(_RELEASE_TO_LOT[expired], {"p_lot_id": lot_id, "p_points": points})
    require(updated.rowcount == 1, f"points lot {lot_id} holds {points}")


def mark_draw_returned(connection: Connection, charge_id: str, lot_id: str, points: int) -> None:
    connection.execute(
        _MARK_DRAW_RETURNED, {"p_charge_id": charge_id, "p_lot_id": lot_id, "p_points": points}
    )


def refill_lot(connection: Connection, lot_id: str, points: int) -> None:
    connection.execute(_REFILL_LOT, {"p_lot_id": lot_id, "p_points": points})


def take_from_lot(connection: Connection, lot_id: str, points: int) -> None:
    """Take ``points`` of a locked lot's ``remaining`` (a claw-back)."""
    updated = connection.execute(_TAKE_FROM_LOT, {"p_lot_id": lot_id, "p_points": points})
    require(updated.rowcount == 1, f"locked points lot {lot_id} holds {points}")


#: Built once; the row's values arrive as execution parameters.
_INSERT_LOT = points_lots.insert()


def insert_lot(
    connection: Connection,
    *,
    lot_id: str,
    user_id: int,
    granted: int,
    remaining: int,
    expires_at_us: int | None,
    now_us: int,
    transaction_id: str,
) -> None:
    connection.execute(
        _INSERT_LOT,
        {
            "lot_id": lot_id,
            "user_id": user_id,
            "granted": granted,
            "remaining": remaining,
            "held": 0,
            "expires_at_us": expires_at_us,
            "granted_at_us": now_us,
            "expired_at_us": None,
            "transaction_id": transaction_id,
        },
    )


def due_lot_ids(connection: Connection, now_us: int, after: str, limit: int) -> list[str]:
    """Up to ``limit`` lots past their expiry, not yet recorded, whose id sorts after ``after``."""
    return due_keys(connection, points_lots.c.lot_id, _due_lot_conditions(now_us), after, limit)


def due_lots_summary(connection: Connection, now_us: int, cap: int) -> DueSummary:
    """How many of the lots :func:`due_lot_ids` pages through are due (at most ``cap``), and the
    points still remaining in them (what their expiry writes off)."""
    return due_summary(
        connection, points_lots.c.lot_id, points_lots.c.remaining, _due_lot_conditions(now_us), cap
    )


def _due_lot_conditions(now_us: int) -> list[Any]:
    return [points_lots.c.expired_at_us.is_(None), points_lots.c.expires_at_us <= now_us]


def lot_owner(connection: Connection, lot_id: str) -> int | None:
    owner = connection.execute(
        select(points_lots.c.user_id).where(points_lots.c.lot_id == lot_id)
    ).scalar_one_or_none()
    return None if owner is None else int(owner)


def lock_lot(connection: Connection, lot_id: str) -> Row[Any] | None:
    return connection.execute(
        select(points_lots).where(points_lots.c.lot_id == lot_id).with_for_update()
    ).one_or_none()


def close_expired_lot(connection: Connection, lot_id: str, remaining: int, now_us: int) -> bool:
    """Record the lot expired, its ``remaining`` (still ``remaining``) written off; False when it
    was recorded already or changed meanwhile."""
    updated = connection.execute(
        points_lots.update()
        .where(
            points_lots.c.lot_id == lot_id,
            points_lots.c.expired_at_us.is_(None),
            points_lots.c.remaining == remaining,
        )
        .values(remaining=0, expired_at_us=now_us)
    )
    return updated.rowcount == 1


def insert_lots(connection: Connection, rows: Columns) -> None:
    """Insert many new lots in one statement (``rows``: every column of :func:`insert_lot` but
    ``held`` and ``expired_at_us``, which start at 0 and NULL)."""
    count = row_count(rows)
    insert_rows(connection, points_lots, {**rows, "held": [0] * count})
