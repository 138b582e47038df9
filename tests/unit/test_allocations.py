"""Refund allocation across legs, discount allocation across lines, item refund values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.discount_allocation import allocate_discount
from engine.domain.refund_allocation import LegBalance, allocate_return, item_refund_value


def legs() -> list[LegBalance]:
    return [
        LegBalance(0, "POINTS", "", 300, 300),
        LegBalance(1, "COINS", "", 200, 200),
        LegBalance(2, "GIFT_CARD", "A", 100, 100),
        LegBalance(3, "GIFT_CARD", "B", 150, 150),
        LegBalance(4, "CASH", "", 250, 250),
    ]


def test_refund_goes_back_cash_then_cards_last_drawn_first_then_coins_then_points() -> None:
    returned = allocate_return(600, legs())
    assert [(item.kind, item.instrument, item.value) for item in returned] == [
        ("CASH", "", 250),
        ("GIFT_CARD", "B", 150),
        ("GIFT_CARD", "A", 100),
        ("COINS", "", 100),
    ]


def test_emptying_a_points_leg_returns_every_point() -> None:
    points_leg = [LegBalance(0, "POINTS", "", 100, 1_000)]  # 10 points per fen
    first = allocate_return(33, points_leg)
    assert first[0].units == 330
    rest = allocate_return(67, [LegBalance(0, "POINTS", "", 67, 1_000 - 330)])
    assert rest[0].units == 670


@given(
    st.lists(
        st.one_of(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=10**9)),
        min_size=1,
        max_size=50,
    ),
    st.data(),
)
def test_discount_shares_sum_exactly_and_fit_each_line(lines: list[int], data: st.DataObject) -> None:
    discount = data.draw(st.integers(min_value=0, max_value=sum(lines)))
    shares = allocate_discount(lines, discount)
    assert sum(shares) == discount
    assert all(0 <= share <= line for share, line in zip(shares, lines, strict=True))


def test_discount_remainder_goes_to_the_largest_line() -> None:
    assert allocate_discount([100, 300, 100], 100) == [20, 60, 20]
    assert allocate_discount([1, 1, 1], 2) == [1, 1, 0]  # the largest is full: on to the next
    assert allocate_discount([333, 333, 334], 100) == [33, 33, 34]


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=50), st.data())
def test_refunding_a_line_unit_by_unit_returns_its_paid_share_exactly(
    paid_share: int, quantity: int, data: st.DataObject
) -> None:
    refunded_quantity = refunded_value = 0
    while refunded_quantity < quantity:
        step = data.draw(st.integers(min_value=1, max_value=quantity - refunded_quantity))
        value = item_refund_value(
            paid_share=paid_share,
            quantity=quantity,
            refunded_quantity=refunded_quantity,
            refunded_value=refunded_value,
            refund_quantity=step,
        )
        assert value >= 0
        refunded_quantity += step
        refunded_value += value
    assert refunded_value == paid_share
