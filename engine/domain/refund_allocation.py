"""How refunded value goes back across a charge's legs (CONTRACT §3 Refund).

Order: cash first, then gift cards (the last one drawn first), then coins, then points — the
reverse of the order a charge takes them, so what the platform funded (points) is returned last.
The same order releases the uncaptured rest of a partial capture.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.errors import require


@dataclass(frozen=True)
class LegBalance:
    """What one leg can still give back: ``value`` in fen; ``units`` in the leg's own unit
    (points for the points leg, fen otherwise)."""

    leg_index: int
    kind: str
    instrument: str
    value: int
    units: int


@dataclass(frozen=True)
class LegReturn:
    leg_index: int
    kind: str
    instrument: str
    value: int
    units: int


REFUND_ORDER = ("CASH", "GIFT_CARD", "COINS", "POINTS")


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
        returns.append(LegReturn(leg.leg_index, leg.kind, leg.instrument, value, units))
        remaining -= value
    require(remaining == 0, "every fen of a return is placed on a leg")
    return returns


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
