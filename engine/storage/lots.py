"""Points lots: drawing FIFO for a charge, returning to the same lots on refund or release."""

from __future__ import annotations

from sqlalchemy import Connection, select

from engine.domain.errors import InvariantViolation
from engine.domain.points_fifo import Lot, LotDraw
from engine.storage.schema import lot_draws, points_lots

#: A user's live lots read for one spend; more than this many lots is refused as a bug signal.
MAX_LOTS_PER_SPEND = 10_000


def read_spendable_lots(connection: Connection, user_id: int, now_us: int) -> list[Lot]:
    rows = connection.execute(
        select(
            points_lots.c.lot_id,
            points_lots.c.remaining,
            points_lots.c.expires_at_us,
            points_lots.c.granted_at_us,
        )
        .where(
            points_lots.c.user_id == user_id,
            points_lots.c.remaining > 0,
            (points_lots.c.expires_at_us.is_(None)) | (points_lots.c.expires_at_us > now_us),
        )
        .limit(MAX_LOTS_PER_SPEND)
        .with_for_update()
    ).all()
    return [Lot(row.lot_id, row.remaining, row.expires_at_us, row.granted_at_us) for row in rows]


def apply_draws(connection: Connection, charge_id: str, draws: list[LotDraw], *, hold: bool) -> None:
    """Take the drawn points out of each lot's ``remaining`` (into ``held`` for an authorization)."""
    for draw in draws:
        values = {"remaining": points_lots.c.remaining - draw.points}
        if hold:
            values["held"] = points_lots.c.held + draw.points
        updated = connection.execute(
            points_lots.update()
            .where(points_lots.c.lot_id == draw.lot_id, points_lots.c.remaining >= draw.points)
            .values(**values)
        )
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
