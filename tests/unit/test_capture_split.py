"""Pure rules of issue 3: the capture/release split, business days, --now parsing, card states."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.errors import InvariantViolation
from engine.domain.holds import split_capture
from engine.domain.refund_allocation import REFUND_ORDER, LegBalance
from engine.jobs.__main__ import parse_now
from engine.service.points_exchange import business_day
from engine.storage.gift_cards import effective_state

LEGS = [
    LegBalance(0, "POINTS", "", 1_000, 1_000),
    LegBalance(1, "COINS", "", 500, 500),
    LegBalance(2, "GIFT_CARD", "A", 800, 800),
    LegBalance(3, "GIFT_CARD", "B", 1_200, 1_200),
    LegBalance(4, "CASH", "", 1_500, 1_500),
]


def captured_by_leg(amount: int) -> list[int]:
    return [split.captured_value for split in split_capture(amount, LEGS)]


def test_capture_takes_in_charge_order_and_releases_in_reverse() -> None:
    # Release order: cash, card B (drawn last), card A, coins, points.
    assert captured_by_leg(5_000) == [1_000, 500, 800, 1_200, 1_500]
    assert captured_by_leg(3_400) == [1_000, 500, 800, 1_100, 0]
    assert captured_by_leg(2_000) == [1_000, 500, 500, 0, 0]
    assert captured_by_leg(1_200) == [1_000, 200, 0, 0, 0]
    assert captured_by_leg(1) == [1, 0, 0, 0, 0]
    assert captured_by_leg(0) == [0, 0, 0, 0, 0]
    with pytest.raises(InvariantViolation):
        split_capture(5_001, LEGS)


def test_points_release_rounds_down_and_the_capture_keeps_the_odd_point() -> None:
    # 3 points worth 2 fen (a rate other than 1:1): releasing 1 fen gives back 1 point (floor 1.5).
    legs = [LegBalance(0, "POINTS", "", 2, 3), LegBalance(1, "CASH", "", 10, 10)]
    points, cash = split_capture(1, legs)
    assert (points.captured_value, points.captured_units, points.released_units) == (1, 2, 1)
    assert (cash.captured_value, cash.released_value) == (0, 10)


@st.composite
def legs_strategy(draw: st.DrawFn) -> list[LegBalance]:
    kinds = draw(st.lists(st.sampled_from(["POINTS", "COINS", "GIFT_CARD", "CASH"]), min_size=1, max_size=6))
    legs = []
    for index, kind in enumerate(kinds):
        value = draw(st.integers(min_value=1, max_value=10**9))
        units = value * draw(st.integers(min_value=1, max_value=3)) if kind == "POINTS" else value
        legs.append(LegBalance(index, kind, f"i{index}", value, units))
    return legs


@given(legs_strategy(), st.data())
def test_split_is_exact_and_releases_in_refund_order(legs: list[LegBalance], data: st.DataObject) -> None:
    authorized = sum(leg.value for leg in legs)
    amount = data.draw(st.integers(min_value=0, max_value=authorized))
    splits = split_capture(amount, legs)
    assert sum(split.captured_value for split in splits) == amount
    assert sum(split.released_value for split in splits) == authorized - amount
    for leg, split in zip(legs, splits, strict=True):
        assert split.captured_value >= 0 and split.released_value >= 0
        assert split.captured_value + split.released_value == leg.value
        assert split.captured_units + split.released_units == leg.units
        assert 0 <= split.released_units <= leg.units
    # A leg keeps captured value only once every leg before it in the release order is fully released.
    order = sorted(range(len(legs)), key=lambda i: (REFUND_ORDER.index(legs[i].kind), -legs[i].leg_index))
    seen_captured = False
    for index in order:
        if seen_captured:
            assert splits[index].released_value == 0
        if splits[index].captured_value > 0:
            seen_captured = True


def test_business_day_follows_the_time_zone() -> None:
    # 2024-01-01 15:59:59 UTC is 23:59:59 in Shanghai; one second later it is the 2nd there.
    assert business_day(1_704_124_799_000_000, "Asia/Shanghai") == "2024-01-01"
    assert business_day(1_704_124_800_000_000, "Asia/Shanghai") == "2024-01-02"
    assert business_day(1_704_124_800_000_000, "UTC") == "2024-01-01"


def test_now_accepts_iso_and_epoch_seconds() -> None:
    assert parse_now("1704124800") == 1_704_124_800_000_000
    assert parse_now("1704124800.5") == 1_704_124_800_500_000
    assert parse_now("2024-01-01T16:00:00Z") == 1_704_124_800_000_000
    assert parse_now("2024-01-02T00:00:00+08:00") == 1_704_124_800_000_000
    assert parse_now("2024-01-01T16:00:00") == 1_704_124_800_000_000
    with pytest.raises(Exception, match="neither"):
        parse_now("yesterday")


def test_a_card_past_its_expiry_is_expired_at_once() -> None:
    assert effective_state("ACTIVE", 100, 99) == "ACTIVE"
    assert effective_state("ACTIVE", 100, 100) == "EXPIRED"
    assert effective_state("EMPTY", 100, 200) == "EXPIRED"
    assert effective_state("FROZEN", None, 200) == "FROZEN"
