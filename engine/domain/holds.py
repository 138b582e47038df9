"""Splitting an authorization between what a Capture takes and what it releases (CONTRACT §3 Holds).

A capture of ``amount`` (the paid amount, at most the authorized one) takes value from the legs
in charge order — points, coins, gift cards (in the order listed), cash — and the uncaptured rest
is released in the reverse order: cash first, then gift cards (the last drawn first), coins,
points. The released part is exactly :func:`engine.domain.refund_allocation.allocate_return` of
``authorized - amount`` over the legs, so the rule is written once; the captured part of each
leg is what is left of it. Points are released in proportion to the value released, rounded down
(the captured part keeps the odd point), which for the default 1 point = 1 fen is exact.

Discount legs (coupons) are not part of the amount: a Capture takes them whole and a Void or an
expiry releases them whole (:func:`split_resolution`), by the outcome, not by the amount — an
authorization its coupons paid entirely captures 0 and still uses its coupons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.errors import CofferError, Reason, require
from engine.domain.leg_kind import PAYING_KINDS, LegKind
from engine.domain.refund_allocation import LegBalance, allocate_return

__all__ = ["LegSplit", "capture_exceeds", "earning_base", "split_capture", "split_resolution"]


@dataclass(frozen=True)
class LegSplit:
    leg_index: int
    kind: LegKind
    instrument: str
    captured_value: int
    captured_units: int
    released_value: int
    released_units: int


def capture_exceeds(amount: int, authorized: int, charge_id: str) -> CofferError:
    return CofferError(
        Reason.CAPTURE_EXCEEDS_AUTHORIZED,
        f"capturing {amount} would pass the {authorized} authorized on {charge_id}",
        metadata={"charge_id": charge_id, "authorized": str(authorized), "field": "amount"},
    )


def split_capture(capture_amount: int, legs: Sequence[LegBalance]) -> list[LegSplit]:
    """Each paying leg's captured and released value and units for a capture of
    ``capture_amount`` (0 captures nothing: a Void or an expiry releases everything)."""
    authorized = sum(leg.value for leg in legs)
    require(0 <= capture_amount <= authorized, "a capture fits the authorization")
    released = {item.leg_index: item for item in allocate_return(authorized - capture_amount, list(legs))}
    splits: list[LegSplit] = []
    for leg in legs:
        back = released.get(leg.leg_index)
        released_value = back.value if back else 0
        released_units = back.units if back else 0
        splits.append(
            LegSplit(
                leg_index=leg.leg_index,
                kind=LegKind(leg.kind),
                instrument=leg.instrument,
                captured_value=leg.value - released_value,
                captured_units=leg.units - released_units,
                released_value=released_value,
                released_units=released_units,
            )
        )
    require(sum(split.captured_value for split in splits) == capture_amount, "the capture is placed exactly")
    return splits


def split_resolution(capture_amount: int, legs: Sequence[LegBalance], *, captured: bool) -> list[LegSplit]:
    """Every leg of an authorization resolved by a Capture (``captured``) of ``capture_amount``,
    or by a Void or an expiry (``capture_amount = 0``): paying legs split by
    :func:`split_capture`, discount legs taken or released whole."""
    require(captured or capture_amount == 0, "only a capture takes value")
    paying = split_capture(capture_amount, [leg for leg in legs if leg.kind in PAYING_KINDS])
    whole = [
        LegSplit(
            leg_index=leg.leg_index,
            kind=LegKind(leg.kind),
            instrument=leg.instrument,
            captured_value=leg.value if captured else 0,
            captured_units=leg.units if captured else 0,
            released_value=0 if captured else leg.value,
            released_units=0 if captured else leg.units,
        )
        for leg in legs
        if leg.kind not in PAYING_KINDS
    ]
    return whole + paying


def earning_base(splits: Sequence[LegSplit]) -> int:
    """The captured value that earns points: what was paid with cash, gift cards and coins
    (value paid with points earns nothing; a discount is no paid value)."""
    return sum(
        split.captured_value
        for split in splits
        if split.kind in PAYING_KINDS and split.kind is not LegKind.POINTS
    )
