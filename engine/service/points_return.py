"""Points given back by a refund go to the lots they came from (CONTRACT §3 Refund).

The lot drawn last (latest expiry) is refilled first, so the user keeps the longest-lived
points. A lot that expired meanwhile takes its points back and expires them again at once: the
refund transaction carries a ``points_expired`` entry naming the lot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from engine.domain.errors import require
from engine.domain.ledger import POINTS_EXPIRED, system_entry, user_entry
from engine.domain.money import Asset
from engine.storage import balances
from engine.storage.schema import lot_draws, points_lots

if TYPE_CHECKING:
    from engine.service.legs import LegMove, LegScope


def return_points_to_lots(scope: LegScope, leg: LegMove) -> None:
    connection = scope.connection
    draws = connection.execute(
        select(
            lot_draws.c.lot_id,
            lot_draws.c.points,
            lot_draws.c.returned,
            points_lots.c.expires_at_us,
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
        expired = draw.expires_at_us is not None and draw.expires_at_us <= scope.now_us
        plan.append((draw.lot_id, give, expired))
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
