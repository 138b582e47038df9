"""One handler per :class:`~engine.domain.leg_kind.LegKind`, and the loops the use cases call to
move a whole charge's legs — always in :data:`~engine.domain.leg_kind.LOCK_ORDER` (coupons by
id, gift cards by code, then the CASH, COINS, POINTS balances), so no use case writes the lock
order or branches on a leg kind itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.holds import LegSplit
from engine.domain.leg_kind import LegKind, in_lock_order
from engine.domain.money import Asset
from engine.domain.refund_allocation import LegReturn
from engine.legs.coupon import CouponHandler
from engine.legs.gift_card import GiftCardHandler
from engine.legs.points import PointsHandler
from engine.legs.protocol import LegHandler, LegMove, LegScope
from engine.legs.wallet import WalletAssetHandler
from engine.storage.charges import add_leg_totals

__all__ = ["HANDLERS", "give_back_all", "handler_for", "resolve_all", "take_all"]

HANDLERS: dict[LegKind, LegHandler] = {
    LegKind.COUPON: CouponHandler(),
    LegKind.GIFT_CARD: GiftCardHandler(),
    LegKind.CASH: WalletAssetHandler(Asset.CASH),
    LegKind.COINS: WalletAssetHandler(Asset.COINS),
    LegKind.POINTS: PointsHandler(),
}


def handler_for(kind: LegKind) -> LegHandler:
    return HANDLERS[kind]


def take_all(scope: LegScope, legs: Sequence[LegMove], *, hold: bool) -> None:
    """Take every leg of a new charge (held for an authorization)."""
    for leg in in_lock_order(legs, lambda leg: (leg.kind, leg.instrument)):
        handler_for(leg.kind).take(scope, leg, hold=hold)


def resolve_all(scope: LegScope, splits: Sequence[LegSplit]) -> None:
    """Capture, Void or expiry: settle each leg's captured part, release the rest, and add both
    to the leg row. A part of no units is no movement (a coupon always has units: the rules
    refuse one that takes nothing off)."""
    for split in in_lock_order(splits, lambda split: (split.kind, split.instrument)):
        handler = handler_for(split.kind)
        if split.captured_units:
            handler.settle(
                scope, LegMove(split.kind, split.instrument, split.captured_value, split.captured_units)
            )
        if split.released_units:
            handler.release(
                scope, LegMove(split.kind, split.instrument, split.released_value, split.released_units)
            )
        add_leg_totals(
            scope.connection,
            scope.charge_id,
            split.leg_index,
            captured=(split.captured_value, split.captured_units),
            released=(split.released_value, split.released_units),
        )


def give_back_all(scope: LegScope, returns: Sequence[LegReturn]) -> None:
    """Refund: give each leg's share back and add it to the leg row's refunded totals."""
    for returned in in_lock_order(returns, lambda item: (item.kind, item.instrument)):
        handler_for(returned.kind).give_back(
            scope, LegMove(returned.kind, returned.instrument, returned.value, returned.units)
        )
        add_leg_totals(
            scope.connection, scope.charge_id, returned.leg_index, refunded=(returned.value, returned.units)
        )
