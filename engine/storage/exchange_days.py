"""Per-user, per-business-day totals of points exchanged for cash (the daily cap, seed 002)."""

from __future__ import annotations

from sqlalchemy import Connection

from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import points_exchange_days

__all__ = ["raise_daily_total"]


def raise_daily_total(connection: Connection, user_id: int, day: str, points: int, cap: int) -> bool:
    """Add ``points`` to ``user_id``'s total of ``day``; False (nothing changed) when that would
    pass ``cap``. One conditional UPDATE on the day's row, so concurrent exchanges queue on it
    and never pass the cap together."""
    insert_or_ignore(connection, points_exchange_days, {"user_id": user_id, "day": day, "points": 0})
    updated = connection.execute(
        points_exchange_days.update()
        .where(
            points_exchange_days.c.user_id == user_id,
            points_exchange_days.c.day == day,
            points_exchange_days.c.points <= cap - points,
        )
        .values(points=points_exchange_days.c.points + points)
    )
    return updated.rowcount == 1
