"""POINTS legs: the POINTS balance and the lots behind it (``points_lots``, ``lot_draws``).

*Take* draws FIFO from live lots (oldest expiry first). *Settle* (Capture) spends the held points
of the earliest-expiring lots; *release* (Void, hold expiry, the uncaptured rest) and *give back*
(Refund) refill the latest-expiring lots first, so the user keeps the longest-lived points. A lot
that expired meanwhile takes its points back and expires them again at once: the transaction
carries a ``points_expired`` entry naming the lot.

Lock order: the POINTS balance row before the lots, in every movement (the expiry job takes the
balance row too, so lots read after it show any expiry the job committed meanwhile).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.domain.errors import require
from engine.domain.ledger import POINTS_EXPIRED, Bucket, system_entry, user_entry
from engine.domain.money import Asset
from engine.domain.points_fifo import draw_points, lot_has_expired
from engine.legs.protocol import LegMove, LegScope
from engine.legs.wallet import WalletAssetHandler
from engine.storage import balances, lots

__all__ = ["PointsHandler"]

#: (lot, points, the lot has expired) — what a release or a refund gives back to each lot.
_LotReturn = tuple[str, int, bool]


class PointsHandler(WalletAssetHandler):
    def __init__(self) -> None:
        super().__init__(Asset.POINTS)

    def take(self, scope: LegScope, leg: LegMove, *, hold: bool) -> None:
        super().take(scope, leg, hold=hold)
        # The balance may still count a lot that expired before the job ran; only live lots pay.
        spendable = lots.read_spendable_lots(scope.connection, scope.user_id, scope.now_us)
        draws = draw_points(spendable, leg.units, scope.now_us)
        if draws is None:
            raise balances.insufficient_funds(Asset.POINTS, leg.units)
        lots.apply_draws(scope.connection, scope.charge_id, draws, hold=hold)

    def settle(self, scope: LegScope, leg: LegMove) -> None:
        """The balance's and then the lots' held points leave for good (earliest expiry first)."""
        super().settle(scope, leg)
        remaining = leg.units
        for draw in lots.held_draws(scope.connection, scope.charge_id, latest_first=False):
            if remaining == 0:
                break
            take = min(draw.held, remaining)
            lots.take_held_from_draw(scope.connection, scope.charge_id, draw.lot_id, take, returned=False)
            lots.settle_lot_hold(scope.connection, draw.lot_id, take)
            remaining -= take
        require(remaining == 0, "settled points never exceed what the authorization holds")

    def release(self, scope: LegScope, leg: LegMove) -> None:
        """Held points go back to their lots (latest expiry first) and to the user's available."""
        connection = scope.connection
        balances.lock_points_balance(connection, scope.user_id)
        # Planned first: the charge row is locked, so its draws are stable.
        plan = _plan_returns(
            ((draw, draw.held) for draw in lots.held_draws(connection, scope.charge_id, latest_first=True)),
            leg.units,
            scope.now_us,
            "released points never exceed what the authorization holds",
        )
        live = sum(give for _, give, expired in plan if not expired)
        balances.release(connection, scope.user_id, Asset.POINTS, live)
        balances.settle_held(connection, scope.user_id, Asset.POINTS, leg.units - live)
        self._post_release(scope, leg)
        for lot_id, give, expired in plan:
            lots.take_held_from_draw(connection, scope.charge_id, lot_id, give, returned=True)
            if expired:
                _post_reexpiry(scope, lot_id, give)
            lots.release_to_lot(connection, lot_id, give, expired=expired)

    def give_back(self, scope: LegScope, leg: LegMove) -> None:
        """A refund: points go back to the lots they came from (latest expiry first)."""
        connection = scope.connection
        balances.lock_points_balance(connection, scope.user_id)
        plan = _plan_returns(
            ((draw, draw.points - draw.returned) for draw in lots.charge_draws(connection, scope.charge_id)),
            leg.units,
            scope.now_us,
            "refunded points never exceed what the charge drew from lots",
        )
        balances.credit_available(
            connection, scope.user_id, Asset.POINTS, sum(give for _, give, expired in plan if not expired)
        )
        for lot_id, give, expired in plan:
            lots.mark_draw_returned(connection, scope.charge_id, lot_id, give)
            if expired:
                _post_reexpiry(scope, lot_id, give)
            else:
                lots.refill_lot(connection, lot_id, give)
        self._post_give_back(scope, leg)


def _plan_returns(
    draws: Iterable[tuple[Any, int]], units: int, now_us: int, invariant: str
) -> Sequence[_LotReturn]:
    """Place ``units`` on ``draws`` ((draw, what it can take back), in refill order)."""
    plan: list[_LotReturn] = []
    remaining = units
    for draw, room in draws:
        if remaining == 0:
            break
        give = min(room, remaining)
        if give <= 0:
            continue
        remaining -= give
        plan.append((draw.lot_id, give, lot_has_expired(draw.expires_at_us, draw.expired_at_us, now_us)))
    require(remaining == 0, invariant)
    return plan


def _post_reexpiry(scope: LegScope, lot_id: str, points: int) -> None:
    """Points returned to a lot that has expired expire again at once."""
    scope.posting.move(
        user_entry(scope.user_id, Asset.POINTS, points, Bucket.AVAILABLE, instrument=lot_id),
        system_entry(POINTS_EXPIRED, Asset.POINTS, points, instrument=lot_id),
    )
