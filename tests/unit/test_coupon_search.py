"""The best-combination search on tabled carts (the pure half of issue 4 must-show 4)."""

from __future__ import annotations

import pytest

from engine.domain.commands import LineItem
from engine.domain.coupons.rules import CouponRules, CouponScope, CouponType, cart_of
from engine.domain.coupons.search import Candidate, best_combination
from engine.domain.errors import Reason

MAN_100_20 = CouponRules(CouponType.FIXED_OFF, amount_off=2000, min_spend=10000)
MAN_200_50 = CouponRules(CouponType.FIXED_OFF, amount_off=5000, min_spend=20000)
PCT_10_CAP_30 = CouponRules(CouponType.PERCENT_OFF, discount_bps=1000, max_discount=3000)
STACK_5 = CouponRules(CouponType.NO_THRESHOLD, amount_off=500, stackable=True)
STACK_8 = CouponRules(CouponType.NO_THRESHOLD, amount_off=800, stackable=True)
STACK_VEG_15 = CouponRules(
    CouponType.FIXED_OFF,
    amount_off=1500,
    min_spend=5000,
    stackable=True,
    scope=CouponScope(categories=("veg",)),
)

WALLET = [
    Candidate("c-man100", MAN_100_20),
    Candidate("c-man200", MAN_200_50),
    Candidate("c-pct10", PCT_10_CAP_30),
    Candidate("c-s5", STACK_5),
    Candidate("c-s8", STACK_8),
    Candidate("c-veg15", STACK_VEG_15),
]


@pytest.mark.parametrize(
    ("amount", "lines", "best", "total"),
    [
        # 40 yuan: no threshold met (veg needs 50); stackables 8 + 5 = 13 beat 10% (4).
        (4000, (), ("c-s8", "c-s5"), 1300),
        # 100 yuan without items: veg scope accepts the single line: 15 + 8 + 5 = 28 > 满100减20.
        (10000, (), ("c-veg15", "c-s8", "c-s5"), 2800),
        # 250 yuan: 满200减50 alone (50) beats 10% capped at 30 and the stack 15 + 8 + 5 = 28.
        (25000, (), ("c-man200",), 5000),
        # 250 yuan of beer: the veg coupon does not apply; 满200减50 still best.
        (25000, (("beer", 25000, 1),), ("c-man200",), 5000),
        # 120 yuan, 60 of it veg: stack 15 + 8 + 5 = 28 beats 满100减20 and 10% (12).
        (12000, (("veg", 6000, 1), ("beer", 6000, 1)), ("c-veg15", "c-s8", "c-s5"), 2800),
        # 3 yuan: either no-threshold coupon alone takes all 3 (capped by the order); one coupon
        # is enough, and of equals the smaller id is chosen.
        (300, (), ("c-s5",), 300),
    ],
)
def test_best_choice_on_tabled_carts(
    amount: int, lines: tuple[tuple[str, int, int], ...], best: tuple[str, ...], total: int
) -> None:
    items = tuple(
        LineItem(f"sku{index}", category, price, qty) for index, (category, price, qty) in enumerate(lines)
    )
    choice = best_combination(cart_of(amount, items, "m"), WALLET)
    assert choice.coupon_ids == best
    assert choice.total == total
    assert choice.total <= amount
    explained = {coupon_id for coupon_id, _rejection in choice.rejected}
    assert explained == {candidate.coupon_id for candidate in WALLET} - set(best)


def test_rejections_name_their_reasons() -> None:
    choice = best_combination(cart_of(4000, (), "m"), WALLET)
    reasons = {coupon_id: rejection.reason for coupon_id, rejection in choice.rejected}
    assert reasons["c-man100"] is Reason.MIN_SPEND_NOT_MET
    assert reasons["c-man200"] is Reason.MIN_SPEND_NOT_MET
    assert reasons["c-veg15"] is Reason.MIN_SPEND_NOT_MET
    assert reasons["c-pct10"] is Reason.COUPONS_NOT_STACKABLE


def test_ties_prefer_the_coupon_that_expires_first() -> None:
    wallet = [Candidate("late", STACK_5, 2_000), Candidate("early", STACK_5, 1_000)]
    choice = best_combination(cart_of(500, (), "m"), wallet)
    assert choice.coupon_ids == ("early",)


def test_search_is_bounded() -> None:
    wallet = [Candidate(f"c{index:03}", STACK_5) for index in range(100)]
    choice = best_combination(cart_of(100000, (), "m"), wallet, max_coupons=5)
    assert len(choice.coupon_ids) == 5 and choice.total == 2500
    assert choice.combinations_tried <= 2000
    assert len(choice.rejected) == 95
