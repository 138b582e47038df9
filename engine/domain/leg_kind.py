"""The kinds of value a charge is paid with (its *legs*), and the orders they move in.

The values equal the strings stored in ``charge_legs.kind``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import TypeVar

_T = TypeVar("_T")

__all__ = ["LOCK_ORDER", "PAYING_KINDS", "REFUND_ORDER", "LegKind", "in_lock_order"]


class LegKind(enum.StrEnum):
    COUPON = "COUPON"
    POINTS = "POINTS"
    COINS = "COINS"
    GIFT_CARD = "GIFT_CARD"
    CASH = "CASH"


#: The order every use case locks (and so moves) legs in, to keep lock waits deadlock-free: after
#: the charge row, coupons (sorted by id), gift cards (sorted by code), then the CASH, COINS,
#: POINTS balances (the POINTS handler takes the balance row before the points lots).
LOCK_ORDER: tuple[LegKind, ...] = (
    LegKind.COUPON,
    LegKind.GIFT_CARD,
    LegKind.CASH,
    LegKind.COINS,
    LegKind.POINTS,
)

#: The order captured value goes back in (refunds) and held value is released in (the
#: uncaptured rest of a partial capture): cash first, then gift cards, coins, points (CONTRACT §3).
REFUND_ORDER: tuple[LegKind, ...] = (LegKind.CASH, LegKind.GIFT_CARD, LegKind.COINS, LegKind.POINTS)

#: The kinds that pay part of the amount (captured, released and refunded in fen); the rest
#: (COUPON) are discounts, which move whole.
PAYING_KINDS: frozenset[LegKind] = frozenset(REFUND_ORDER)


def in_lock_order(items: Iterable[_T], leg_of: Callable[[_T], tuple[LegKind, str]]) -> list[_T]:
    """``items`` sorted by :data:`LOCK_ORDER`, each kind's instruments sorted (``leg_of`` gives an
    item's kind and instrument): the one place the lock order is applied."""

    def key(item: _T) -> tuple[int, str]:
        kind, instrument = leg_of(item)
        return LOCK_ORDER.index(kind), instrument

    return sorted(items, key=key)
