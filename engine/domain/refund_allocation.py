"""How refunded value goes back across a charge's legs (CONTRACT §3 Refund).

Order: cash first, then gift cards (the last one drawn first), then coins, then points — the
reverse of the order a charge takes them, so what the platform funded (points) is returned last.
The same order releases the uncaptured rest of a partial capture. Discount legs (coupons) are
not part of the amount: the refund that completes the order gives back what they still hold,
whole (:func:`allocate_refund`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.errors import require
from engine.domain.leg_kind import PAYING_KINDS, REFUND_ORDER, LegKind
from engine.domain.results import Breakdown, InstrumentAmount

__all__ = [
    "REFUND_ORDER",
    "LegBalance",
    "LegReturn",
    "allocate_refund",
    "allocate_return",
    "item_refund_value",
    "refund_breakdown",
]


@dataclass(frozen=True)
class LegBalance:
    """What one leg can still give back: ``value`` in fen; ``units`` in the leg's own unit
    (points for the points leg, fen otherwise)."""

    leg_index: int
    kind: LegKind
    instrument: str
    value: int
    units: int


@dataclass(frozen=True)
class LegReturn:
    leg_index: int
    kind: LegKind
    instrument: str
    value: int
    units: int


def allocate_return(amount: int, legs: list[LegBalance]) -> list[LegReturn]:
    """Take ``amount`` fen back from ``legs`` in :data:`REFUND_ORDER`.

    A points leg returns points in proportion to the value returned, rounded down, except that
    emptying the leg returns all its remaining points (so no point is ever stranded).
    """
    require(amount >= 0, "a return amount is not negative")
    require(amount <= sum(leg.value for leg in legs), "a return never exceeds what the legs hold")
    ordered = sorted(legs, key=lambda leg: (REFUND_ORDER.index(leg.kind), -leg.leg_index))
    remaining = amount
    returns: list[LegReturn] = []
    for leg in ordered:
        if remaining == 0:
            break
        value = min(leg.value, remaining)
        if value == 0:
            continue
        if value == leg.value:
            units = leg.units
        else:
            units = (leg.units * value) // leg.value
        returns.append(LegReturn(leg.leg_index, LegKind(leg.kind), leg.instrument, value, units))
        remaining -= value
    require(remaining == 0, "every fen of a return is placed on a leg")
    return returns


def allocate_refund(amount: int, legs: Sequence[LegBalance], *, completes_order: bool) -> list[LegReturn]:
    """What a refund of ``amount`` gives back from each leg (``legs``: what each can still give
    back): the paying legs by :func:`allocate_return`; when the refund ``completes_order``, every
    discount leg's remainder too."""
    paying = allocate_return(amount, [leg for leg in legs if leg.kind in PAYING_KINDS])
    if not completes_order:
        return paying
    whole = [
        LegReturn(leg.leg_index, LegKind(leg.kind), leg.instrument, leg.value, leg.units)
        for leg in legs
        if leg.kind not in PAYING_KINDS and leg.value > 0
    ]
    return whole + paying


def refund_breakdown(returns: Sequence[LegReturn]) -> Breakdown:
    """How a refund's value went back, per asset (discount legs are not paid value)."""
    by_kind = {kind: 0 for kind in PAYING_KINDS}
    points_units = 0
    gift_cards: list[InstrumentAmount] = []
    for item in returns:
        if item.kind not in PAYING_KINDS:
            continue
        by_kind[item.kind] += item.value
        if item.kind is LegKind.GIFT_CARD:
            gift_cards.append(InstrumentAmount(item.instrument, item.value))
        if item.kind is LegKind.POINTS:
            points_units += item.units
    return Breakdown(
        points_used=points_units,
        points_value=by_kind[LegKind.POINTS],
        coins_used=by_kind[LegKind.COINS],
        gift_card_amount=by_kind[LegKind.GIFT_CARD],
        cash_amount=by_kind[LegKind.CASH],
        gift_cards=tuple(gift_cards),
    )


def item_refund_value(
    *, paid_share: int, quantity: int, refunded_quantity: int, refunded_value: int, refund_quantity: int
) -> int:
    """The paid value of ``refund_quantity`` more units of a line.

    Units are valued at ``paid_share × k / quantity`` rounded down; the units that complete the
    line take whatever is left of its paid share, so a fully refunded line returns it exactly.
    """
    require(0 < refund_quantity <= quantity - refunded_quantity, "refund quantity fits the line")
    if refunded_quantity + refund_quantity == quantity:
        return paid_share - refunded_value
    return (paid_share * (refunded_quantity + refund_quantity)) // quantity - refunded_value
