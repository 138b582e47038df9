"""Leg planning: the order of legs, the points cap, and amount = sum of legs, always."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.charge_plan import PointsPolicy, plan_charge
from engine.domain.errors import CofferError, Reason
from engine.domain.results import InstrumentAmount

POLICY = PointsPolicy(points_per_yuan=100, cap_bps=5000)


def test_legs_in_order_discount_points_coins_cards_cash() -> None:
    plan = plan_charge(
        amount=10_000,
        coupon_discounts=[InstrumentAmount("cp_1", 2_000)],
        points=1_000,
        coins=500,
        gift_card_available=[InstrumentAmount("A", 3_000), InstrumentAmount("B", 9_000)],
        policy=POLICY,
    )
    assert plan.discount == 2_000 and plan.paid_amount == 8_000
    assert plan.points_value == 1_000 and plan.coins_used == 500
    assert plan.gift_cards == (InstrumentAmount("A", 3_000), InstrumentAmount("B", 3_500))
    assert plan.cash_amount == 0


def test_points_cap_is_judged_after_discount() -> None:
    plan_charge(
        amount=1_000,
        coupon_discounts=[InstrumentAmount("c", 200)],
        points=400,
        coins=0,
        gift_card_available=[],
        policy=POLICY,
    )
    with pytest.raises(CofferError) as refused:
        plan_charge(
            amount=1_000,
            coupon_discounts=[InstrumentAmount("c", 200)],
            points=401,
            coins=0,
            gift_card_available=[],
            policy=POLICY,
        )
    assert refused.value.reason is Reason.POINTS_LIMIT_EXCEEDED


def test_points_and_coins_beyond_the_order_are_invalid() -> None:
    with pytest.raises(CofferError) as refused:
        plan_charge(
            amount=100, coupon_discounts=[], points=40, coins=70, gift_card_available=[], policy=POLICY
        )
    assert refused.value.reason is Reason.INVALID_ARGUMENT


def test_points_rate_other_than_one_fen() -> None:
    policy = PointsPolicy(points_per_yuan=1_000, cap_bps=10_000)  # 10 points = 1 fen
    plan = plan_charge(
        amount=100, coupon_discounts=[], points=500, coins=0, gift_card_available=[], policy=policy
    )
    assert plan.points_value == 50 and plan.cash_amount == 50
    with pytest.raises(CofferError) as refused:
        plan_charge(
            amount=100, coupon_discounts=[], points=505, coins=0, gift_card_available=[], policy=policy
        )
    assert refused.value.metadata["field"] == "points"


@given(
    amount=st.integers(min_value=1, max_value=10**13),
    discount_share=st.integers(min_value=0, max_value=100),
    points_share=st.integers(min_value=0, max_value=50),
    coins_share=st.integers(min_value=0, max_value=50),
    cards=st.lists(st.integers(min_value=0, max_value=10**12), max_size=5),
)
def test_amount_always_equals_the_sum_of_legs(
    amount: int, discount_share: int, points_share: int, coins_share: int, cards: list[int]
) -> None:
    discount = amount * discount_share // 100
    after = amount - discount
    points = after * points_share // 100
    coins = (after - points) * coins_share // 100
    plan = plan_charge(
        amount=amount,
        coupon_discounts=[InstrumentAmount("c", discount)] if discount else [],
        points=points,
        coins=coins,
        gift_card_available=[InstrumentAmount(f"g{index}", value) for index, value in enumerate(cards)],
        policy=POLICY,
    )
    total = plan.discount + plan.points_value + plan.coins_used + plan.gift_card_amount + plan.cash_amount
    assert total == amount
    assert plan.cash_amount >= 0 and all(draw.amount > 0 for draw in plan.gift_cards)
