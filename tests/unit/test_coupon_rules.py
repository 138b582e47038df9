"""Discount arithmetic, scope and stacking, as tables (CONTRACT §3 Coupons, issue 4 must-show 2)."""

from __future__ import annotations

import pytest

from engine.domain.commands import LineItem
from engine.domain.coupons.rules import (
    Applied,
    CouponRules,
    CouponScope,
    CouponType,
    Rejection,
    apply_coupons,
    cart_of,
    evaluate,
)
from engine.domain.errors import Reason

FIXED_100_20 = CouponRules(CouponType.FIXED_OFF, amount_off=2000, min_spend=10000)
VEG_100_20 = CouponRules(
    CouponType.FIXED_OFF, amount_off=2000, min_spend=10000, scope=CouponScope(categories=("veg",))
)
PERCENT_20_CAP_500 = CouponRules(CouponType.PERCENT_OFF, discount_bps=2000, max_discount=50000)
PERCENT_15 = CouponRules(CouponType.PERCENT_OFF, discount_bps=1500)
NO_THRESHOLD_5 = CouponRules(CouponType.NO_THRESHOLD, amount_off=500)


def items(*lines: tuple[str, int, int]) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(f"sku-{index}", category, price, quantity)
        for index, (category, price, quantity) in enumerate(lines)
    )


def discount(
    rules: CouponRules, amount: int, lines: tuple[LineItem, ...] = (), merchant: str = "m"
) -> int | str:
    outcome = evaluate(rules, cart_of(amount, lines, merchant))
    return outcome.reason.label if isinstance(outcome, Rejection) else outcome


@pytest.mark.parametrize(
    ("rules", "amount", "lines", "expected"),
    [
        # 满100减20: 99.99 is below the threshold, 100.00 reaches it (inclusive), more still 20.
        (FIXED_100_20, 9999, (), "MIN_SPEND_NOT_MET"),
        (FIXED_100_20, 10000, (), 2000),
        (FIXED_100_20, 25000, (), 2000),
        # Judged on the in-scope items only: 100 of veg qualifies, 99.99 of veg plus beer does not.
        (VEG_100_20, 15000, items(("veg", 10000, 1), ("beer", 5000, 1)), 2000),
        (VEG_100_20, 19999, items(("veg", 9999, 1), ("beer", 10000, 1)), "MIN_SPEND_NOT_MET"),
        (VEG_100_20, 10000, items(("beer", 10000, 1)), "COUPON_NOT_APPLICABLE"),
        (VEG_100_20, 10000, items(("veg", 2500, 4)), 2000),
        # An order without items is one line every category scope accepts.
        (VEG_100_20, 10000, (), 2000),
        # 20% capped at 500 yuan: 20% of 1,000 yuan is 200; of 3,000 yuan 600 → capped at 500.
        (PERCENT_20_CAP_500, 100000, (), 20000),
        (PERCENT_20_CAP_500, 300000, (), 50000),
        (PERCENT_20_CAP_500, 250000, (), 50000),
        # Odd amounts round down, losing the user less than one fen: 15% of 0.99 = 14.85 fen → 14.
        (PERCENT_15, 99, (), 14),
        (PERCENT_15, 1, (), "COUPON_NOT_APPLICABLE"),
        (PERCENT_20_CAP_500, 12345, (), 2469),
        (PERCENT_20_CAP_500, 33333, items(("a", 11111, 3)), 6666),
        # NO_THRESHOLD never takes more than the in-scope items.
        (NO_THRESHOLD_5, 300, (), 300),
        (NO_THRESHOLD_5, 501, (), 500),
    ],
)
def test_discount_table(
    rules: CouponRules, amount: int, lines: tuple[LineItem, ...], expected: int | str
) -> None:
    assert discount(rules, amount, lines) == expected


def test_percent_rounding_never_costs_the_user_a_fen() -> None:
    for amount in range(1, 2000):
        for bps in (1, 333, 1500, 2000, 3333, 9999, 10000):
            rules = CouponRules(CouponType.PERCENT_OFF, discount_bps=bps)
            outcome = evaluate(rules, cart_of(amount, (), "m"))
            exact_times_10000 = amount * bps
            if isinstance(outcome, Rejection):
                assert exact_times_10000 < 10000
                continue
            assert outcome * 10000 <= exact_times_10000 < (outcome + 1) * 10000
            assert 0 < outcome <= amount


def test_merchant_and_business_line_scope() -> None:
    rules = CouponRules(
        CouponType.NO_THRESHOLD,
        amount_off=300,
        scope=CouponScope(merchants=("m-1",), business_lines=("grocery",)),
    )
    grocery = (LineItem("a", "veg", 1000, 1, "grocery"), LineItem("b", "x", 1000, 1, "delivery"))
    assert discount(rules, 2000, grocery, merchant="m-1") == 300
    assert discount(rules, 2000, grocery, merchant="m-2") == "COUPON_NOT_APPLICABLE"
    delivery_only = (LineItem("b", "x", 1000, 1, "delivery"),)
    assert discount(rules, 1000, delivery_only, merchant="m-1") == "COUPON_NOT_APPLICABLE"
    # The order's business line applies to items that name none.
    plain = (LineItem("a", "veg", 1000, 1),)
    assert evaluate(rules, cart_of(1000, plain, "m-1", "grocery")) == 300


def test_stacking_rules() -> None:
    cart = cart_of(20000, (), "m")
    stackable = CouponRules(CouponType.NO_THRESHOLD, amount_off=500, stackable=True)
    lonely = CouponRules(CouponType.NO_THRESHOLD, amount_off=500, stackable=False)
    both = apply_coupons(cart, [("a", stackable), ("b", stackable), ("c", stackable)])
    assert isinstance(both, Applied) and both.discounts == (500, 500, 500)
    alone = apply_coupons(cart, [("x", lonely)])
    assert isinstance(alone, Applied) and alone.total == 500
    refused = apply_coupons(cart, [("a", stackable), ("x", lonely)])
    assert not isinstance(refused, Applied)
    assert refused[0] == "x" and refused[1].reason is Reason.COUPONS_NOT_STACKABLE


def test_stacked_coupons_never_take_an_order_or_a_line_below_zero() -> None:
    lines = items(("veg", 300, 1), ("beer", 1000, 1))
    cart = cart_of(1300, lines, "m")
    veg_5 = CouponRules(
        CouponType.NO_THRESHOLD, amount_off=500, stackable=True, scope=CouponScope(categories=("veg",))
    )
    veg_2 = CouponRules(
        CouponType.NO_THRESHOLD, amount_off=200, stackable=True, scope=CouponScope(categories=("veg",))
    )
    applied = apply_coupons(cart, [("a", veg_5), ("b", veg_2)])
    # The first takes the veg line to zero; nothing is left for the second.
    assert not isinstance(applied, Applied)
    assert applied[0] == "b" and applied[1].reason is Reason.COUPON_NOT_APPLICABLE
    everything = CouponRules(CouponType.NO_THRESHOLD, amount_off=1200, stackable=True)
    combined = apply_coupons(cart, [("a", veg_5), ("c", everything)])
    assert isinstance(combined, Applied)
    assert combined.discounts == (300, 1000)
    assert combined.line_shares == (300, 1000)
    assert combined.total <= cart.total


def test_line_shares_follow_scope_and_proportion() -> None:
    lines = items(("veg", 3333, 1), ("veg", 6667, 1), ("beer", 5000, 1))
    applied = apply_coupons(cart_of(15000, lines, "m"), [("a", VEG_100_20)])
    assert isinstance(applied, Applied)
    # 2000 over 3333 : 6667 → 666.6 / 1333.4 → floors 666 / 1333, the fen left to the larger line.
    assert applied.line_shares == (666, 1334, 0)
    assert sum(applied.line_shares) == 2000
