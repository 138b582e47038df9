"""The kinds of value a charge is paid with (its *legs*), and the orders they move in.

The values equal the strings stored in ``charge_legs.kind``.
"""

from __future__ import annotations

import enum

__all__ = ["LOCK_ORDER", "REFUND_ORDER", "LegKind"]


class LegKind(enum.StrEnum):
    COUPON = "COUPON"
    POINTS = "POINTS"
    COINS = "COINS"
    GIFT_CARD = "GIFT_CARD"
    CASH = "CASH"


#: The order every use case locks (and so moves) legs in, to keep lock waits deadlock-free:
#: coupons, gift cards (each kind's instruments sorted), then the CASH, COINS, POINTS balances.
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
