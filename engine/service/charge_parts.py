"""What every charge path builds the same way from its plan: the legs in charge order, their
rows, the charge row, the ledger memo and the order-conflict refusal.

Two paths apply a Charge — the leg protocol for any mix of instruments (engine.service.charge)
and the set-based path for many cash-only charges at once (engine.service.cash_charges) — and
both take these from here, so a charge row or a leg row has one shape whichever path wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.charge_plan import ChargePlan
from engine.domain.charge_status import ChargeStatus
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, Reason
from engine.domain.leg_kind import LegKind
from engine.domain.serialization import dumps
from engine.legs import LegMove
from engine.storage.charges import ORDER_CHARGE_KIND, NewCharge

__all__ = ["charge_memo", "leg_rows", "legs_of", "new_charge_row", "order_already_charged"]


def legs_of(plan: ChargePlan) -> list[LegMove]:
    """Every leg in charge order — coupons, points, coins, gift cards (as listed), cash — which
    is also their ``leg_index`` order."""
    legs = [
        LegMove(LegKind.COUPON, item.instrument, item.amount, item.amount) for item in plan.coupon_discounts
    ]
    if plan.points_used:
        legs.append(LegMove(LegKind.POINTS, "", plan.points_value, plan.points_used))
    if plan.coins_used:
        legs.append(LegMove(LegKind.COINS, "", plan.coins_used, plan.coins_used))
    for draw in plan.gift_cards:
        legs.append(LegMove(LegKind.GIFT_CARD, draw.instrument, draw.amount, draw.amount))
    if plan.cash_amount:
        legs.append(LegMove(LegKind.CASH, "", plan.cash_amount, plan.cash_amount))
    return legs


def leg_rows(legs: Sequence[LegMove], *, hold: bool) -> list[dict[str, object]]:
    """The ``charge_legs`` rows of ``legs`` (an immediate charge has captured all of each)."""
    return [
        {
            "leg_index": index,
            "kind": leg.kind.value,
            "instrument": leg.instrument,
            "value": leg.value,
            "units": leg.units,
            "captured_value": 0 if hold else leg.value,
            "captured_units": 0 if hold else leg.units,
        }
        for index, leg in enumerate(legs)
    ]


def new_charge_row(
    command: ChargeCommand,
    plan: ChargePlan,
    *,
    charge_id: str,
    transaction_id: str,
    now_us: int,
    hold_expires_at_us: int | None,
) -> NewCharge:
    """The charge row of ``command`` paid as ``plan``: held until Capture when it authorizes
    only (``hold_expires_at_us`` set), captured at once otherwise."""
    hold = command.authorize_only
    return NewCharge(
        charge_id=charge_id,
        user_id=command.user_id,
        kind=ORDER_CHARGE_KIND,
        order_id=command.order_id,
        merchant_id=command.merchant_id,
        channel_id=command.channel_id,
        amount=command.amount,
        discount=plan.discount,
        points_used=plan.points_used,
        points_value=plan.points_value,
        coins_used=plan.coins_used,
        gift_card_amount=plan.gift_card_amount,
        cash_amount=plan.cash_amount,
        authorized_amount=plan.paid_amount,
        captured_amount=0 if hold else plan.paid_amount,
        status=ChargeStatus.AUTHORIZED if hold else ChargeStatus.CAPTURED,
        hold_expires_at_us=hold_expires_at_us,
        transaction_id=transaction_id,
        breakdown=dumps(plan.breakdown()),
        created_at_us=now_us,
    )


def charge_memo(command: ChargeCommand) -> str:
    return f"order {command.order_id} at {command.merchant_id}"


def order_already_charged(command: ChargeCommand) -> CofferError:
    return CofferError(
        Reason.ORDER_ALREADY_CHARGED,
        f"order {command.order_id} at {command.merchant_id} already has a live charge",
        metadata={"order_id": command.order_id, "merchant_id": command.merchant_id},
    )
