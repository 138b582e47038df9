"""Redeem: value used at a till or converted — dispatched by what is redeemed.

* ``coupon_code``: a coupon redeemed at the till (:mod:`engine.service.coupon_redemption`).
* ``gift_card``: a till redemption of a gift card (:mod:`engine.service.gift_cards`).
* ``points_exchange``: points converted to cash (:mod:`engine.service.points_exchange`).
"""

from __future__ import annotations

from engine.domain.commands import (
    CouponCodeRedemptionSpec,
    GiftCardRedemptionSpec,
    PointsExchangeSpec,
    RedeemCommand,
)
from engine.domain.errors import invalid_argument
from engine.domain.results import RedeemResult
from engine.service.context import EngineContext
from engine.service.coupon_redemption import redeem_coupon_code
from engine.service.gift_cards import redeem_gift_card
from engine.service.points_exchange import exchange_points

__all__ = ["redeem"]


def redeem(context: EngineContext, command: RedeemCommand) -> RedeemResult:
    spec = command.spec
    if isinstance(spec, GiftCardRedemptionSpec):
        return redeem_gift_card(context, command, spec)
    if isinstance(spec, PointsExchangeSpec):
        return exchange_points(context, command, spec)
    if isinstance(spec, CouponCodeRedemptionSpec):
        return redeem_coupon_code(context, command)
    raise invalid_argument("kind", "name one of coupon_code, gift_card, points_exchange")
