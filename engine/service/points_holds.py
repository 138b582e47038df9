"""Points held by an authorization, lot by lot (``lot_draws.held``).

*Settle* (Capture) spends the held points of the earliest-expiring lots; *release* (Void, hold
expiry, the uncaptured rest of a partial capture) gives the latest-expiring lots their points
back first, so the user keeps the longest-lived points — the same rule refunds follow
(:mod:`engine.service.points_return`). A lot that expired while its points were held takes them
back and expires them again at once: the transaction carries a ``points_expired`` entry naming
the lot. The POINTS balance row is changed before the lots (the engine's lock order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from engine.domain.errors import require
from engine.domain.ledger import POINTS_EXPIRED, Bucket, system_entry, user_entry
from engine.domain.money import Asset
from engine.service.points_return import lot_has_expired
from engine.storage import balances
from engine.storage.schema import lot_draws, points_lots

if TYPE_CHECKING:
    from engine.service.legs import LegMove, LegScope


def _held_draws(connection: Connection, charge_id: str, *, latest_first: bool) -> list[Any]:
    expiry = points_lots.c.expires_at_us
    order = (
        (expiry.desc().nulls_first(), lot_draws.c.lot_id.desc())
        if latest_first
        else (expiry.asc().nulls_last(), lot_draws.c.lot_id)
    )
    return list(
        connection.execute(
            select(
                lot_draws.c.lot_id, lot_draws.c.held, points_lots.c.expires_at_us, points_lots.c.expired_at_us
            )
            .join(points_lots, points_lots.c.lot_id == lot_draws.c.lot_id)
            .where(lot_draws.c.charge_id == charge_id, lot_draws.c.held > 0)
            .order_by(*order)
        ).all()
    )


def _take_from_draw(
    connection: Connection, charge_id: str, lot_id: str, points: int, *, returned: bool
) -> None:
    values: dict[str, Any] = {"held": lot_draws.c.held - points}
    if returned:
        values["returned"] = lot_draws.c.returned + points
    updated = connection.execute(
        lot_draws.update()
        .where(lot_draws.c.charge_id == charge_id, lot_draws.c.lot_id == lot_id, lot_draws.c.held >= points)
        .values(**values)
    )
    require(updated.rowcount == 1, f"lot draw {charge_id}/{lot_id} holds {points}")


def settle_held_points(scope: LegScope, units: int) -> None:
    """The lots' held points leave for good (earliest expiry first); the balance is the caller's."""
    remaining = units
    for draw in _held_draws(scope.connection, scope.charge_id, latest_first=False):
        if remaining == 0:
            break
        take = min(draw.held, remaining)
        _take_from_draw(scope.connection, scope.charge_id, draw.lot_id, take, returned=False)
        updated = scope.connection.execute(
            points_lots.update()
            .where(points_lots.c.lot_id == draw.lot_id, points_lots.c.held >= take)
            .values(held=points_lots.c.held - take)
        )
        require(updated.rowcount == 1, f"points lot {draw.lot_id} holds {take}")
        remaining -= take
    require(remaining == 0, "settled points never exceed what the authorization holds")


def release_held_points(scope: LegScope, leg: LegMove) -> None:
    """Held points go back to their lots (latest expiry first) and to the user's available."""
    connection = scope.connection
    remaining = leg.units
    # The POINTS balance lock first, so the lots read next show any expiry the job committed
    # while this request waited for the charge row.
    balances.lock_points_balance(connection, scope.user_id)
    # (lot, points, lot expired) — planned first: the charge row is locked, so its draws are stable.
    plan: list[tuple[str, int, bool]] = []
    for draw in _held_draws(connection, scope.charge_id, latest_first=True):
        if remaining == 0:
            break
        give = min(draw.held, remaining)
        remaining -= give
        plan.append((draw.lot_id, give, lot_has_expired(draw, scope.now_us)))
    require(remaining == 0, "released points never exceed what the authorization holds")
    live = sum(give for _, give, expired in plan if not expired)
    # The POINTS balance row before the lots: the lock order every use case follows.
    balances.release(connection, scope.user_id, Asset.POINTS, live)
    balances.settle_held(connection, scope.user_id, Asset.POINTS, leg.units - live)
    scope.posting.move(
        user_entry(scope.user_id, Asset.POINTS, leg.units, Bucket.HELD),
        user_entry(scope.user_id, Asset.POINTS, leg.units, Bucket.AVAILABLE),
    )
    for lot_id, give, expired in plan:
        _take_from_draw(connection, scope.charge_id, lot_id, give, returned=True)
        values: dict[str, Any] = {"held": points_lots.c.held - give}
        if expired:
            scope.posting.move(
                user_entry(scope.user_id, Asset.POINTS, give, Bucket.AVAILABLE, instrument=lot_id),
                system_entry(POINTS_EXPIRED, Asset.POINTS, give, instrument=lot_id),
            )
        else:
            values["remaining"] = points_lots.c.remaining + give
        updated = connection.execute(
            points_lots.update()
            .where(points_lots.c.lot_id == lot_id, points_lots.c.held >= give)
            .values(**values)
        )
        require(updated.rowcount == 1, f"points lot {lot_id} holds {give}")
