"""Points given back by a refund go to the lots they came from (CONTRACT §3 Refund).

The lot drawn last (latest expiry) is refilled first, so the user keeps the longest-lived
points. A lot that expired meanwhile takes its points back and expires them again at once: the
refund transaction carries a ``points_expired`` entry naming the lot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.domain.errors import require
from engine.domain.ledger import POINTS_EXPIRED, system_entry, user_entry
from engine.domain.money import Asset
from engine.storage import balances
from engine.storage.schema import lot_draws, points_lots

if TYPE_CHECKING:
    from engine.service.legs import LegMove, LegScope


def lot_has_expired(lot: Any, now_us: int) -> bool:
    """Expired by its instant, or already closed by the expiry job (whose clock may run ahead):
    either way points returned to it expire again at once instead of refilling it."""
    return lot.expired_at_us is not None or (lot.expires_at_us is not None and lot.expires_at_us <= now_us)


def return_points_to_lots(scope: LegScope, leg: LegMove) -> None:
    connection = scope.connection
    # The POINTS balance lock first (the lock order; the expiry job takes it too), so the lots
    # read next show any expiry the job committed while this request waited.
    balances.lock_points_balance(connection, scope.user_id)
    draws = connection.execute(
        select(
            lot_draws.c.lot_id,
            lot_draws.c.points,
            lot_draws.c.returned,
            points_lots.c.expires_at_us,
            points_lots.c.expired_at_us,
        )
        .join(points_lots, points_lots.c.lot_id == lot_draws.c.lot_id)
        .where(lot_draws.c.charge_id == scope.charge_id)
        # NULLS FIRST: a lot that never expires is the latest-expiring one (SQLite sorts NULL last).
        .order_by(points_lots.c.expires_at_us.desc().nulls_first(), lot_draws.c.lot_id.desc())
    ).all()
    plan: list[tuple[str, int, bool]] = []
    remaining = leg.units
    for draw in draws:
        if remaining == 0:
            break
        give = min(draw.points - draw.returned, remaining)
        if give <= 0:
            continue
        remaining -= give
        plan.append((draw.lot_id, give, lot_has_expired(draw, scope.now_us)))
    require(remaining == 0, "refunded points never exceed what the charge drew from lots")
    # The POINTS balance row before the lots: the lock order every use case follows.
    balances.credit_available(
        connection, scope.user_id, Asset.POINTS, sum(give for _, give, expired in plan if not expired)
    )
    for lot_id, give, expired in plan:
        connection.execute(
            lot_draws.update()
            .where(lot_draws.c.charge_id == scope.charge_id, lot_draws.c.lot_id == lot_id)
            .values(returned=lot_draws.c.returned + give)
        )
        if expired:
            scope.posting.move(
                user_entry(scope.user_id, Asset.POINTS, give, instrument=lot_id),
                system_entry(POINTS_EXPIRED, Asset.POINTS, give, instrument=lot_id),
            )
            continue
        connection.execute(
            points_lots.update()
            .where(points_lots.c.lot_id == lot_id)
            .values(remaining=points_lots.c.remaining + give)
        )
