"""Leg planning for a combined payment (CONTRACT §3 Charge, seed 002).

The order is fixed: coupons (discount), points, coins, gift cards (in the order listed), then
cash for the rest. Always ``amount = discount + points_value + coins_used + gift_card_amount +
cash_amount``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.errors import CofferError, Reason, invalid_argument, require
from engine.domain.money import apply_bps_floor, points_to_fen
from engine.domain.results import Breakdown, InstrumentAmount


@dataclass(frozen=True)
class PointsPolicy:
    """How points pay: ``points_per_yuan`` points are worth 100 fen; at most ``cap_bps`` of the
    amount after discount may be paid with points."""

    points_per_yuan: int = 100
    cap_bps: int = 5000


@dataclass(frozen=True)
class ChargePlan:
    amount: int
    discount: int
    coupon_discounts: tuple[InstrumentAmount, ...]
    points_used: int
    points_value: int
    coins_used: int
    gift_cards: tuple[InstrumentAmount, ...]
    cash_amount: int

    @property
    def paid_amount(self) -> int:
        """What is authorized, captured and refunded: the amount after discount."""
        return self.amount - self.discount

    @property
    def gift_card_amount(self) -> int:
        return sum(draw.amount for draw in self.gift_cards)

    def breakdown(self) -> Breakdown:
        return Breakdown(
            discount=self.discount,
            points_used=self.points_used,
            points_value=self.points_value,
            coins_used=self.coins_used,
            gift_card_amount=self.gift_card_amount,
            cash_amount=self.cash_amount,
            gift_cards=self.gift_cards,
            coupons=self.coupon_discounts,
        )


def plan_charge(
    *,
    amount: int,
    coupon_discounts: Sequence[InstrumentAmount],
    points: int,
    coins: int,
    gift_card_available: Sequence[InstrumentAmount],
    policy: PointsPolicy,
) -> ChargePlan:
    """Split ``amount`` across the legs.

    ``gift_card_available`` lists each usable card's available balance in the order the caller
    named them; each is drawn up to what remains after coupons, points and coins.
    """
    discount = sum(item.amount for item in coupon_discounts)
    require(0 <= discount <= amount, "coupon discounts never exceed the order")
    after_discount = amount - discount

    if points and (points * 100) % policy.points_per_yuan:
        raise invalid_argument(
            "points", f"must be a multiple of {policy.points_per_yuan // _gcd(policy.points_per_yuan, 100)}"
        )
    points_value = points_to_fen(points, policy.points_per_yuan)
    if points_value + coins > after_discount:
        raise invalid_argument("points", "points and coins exceed what is left after discounts")
    points_cap = apply_bps_floor(after_discount, policy.cap_bps)
    if points_value > points_cap:
        raise CofferError(
            Reason.POINTS_LIMIT_EXCEEDED,
            f"points worth {points_value} fen pass the per-order cap of {points_cap} fen",
            metadata={"field": "points", "asset": "POINTS", "cap_fen": str(points_cap)},
        )

    remaining = after_discount - points_value - coins
    draws: list[InstrumentAmount] = []
    for card in gift_card_available:
        take = min(card.amount, remaining)
        if take > 0:
            draws.append(InstrumentAmount(card.instrument, take))
            remaining -= take
    plan = ChargePlan(
        amount=amount,
        discount=discount,
        coupon_discounts=tuple(coupon_discounts),
        points_used=points,
        points_value=points_value,
        coins_used=coins,
        gift_cards=tuple(draws),
        cash_amount=remaining,
    )
    require(
        plan.discount + plan.points_value + plan.coins_used + plan.gift_card_amount + plan.cash_amount
        == plan.amount,
        "the legs of a charge add up to its amount",
    )
    return plan


def _gcd(left: int, right: int) -> int:
    while right:
        left, right = right, left % right
    return left
