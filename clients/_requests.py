"""Request builders: shared by the client methods and by callers that journal a request before
sending it (the POS CLI), so what is stored is exactly what is sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from coffer.v1 import common_pb2, engine_pb2

LineItemLike = common_pb2.LineItem | tuple[str, int, int] | tuple[str, str, int, int]
RefundItemLike = engine_pb2.RefundItem | tuple[str, int]


def new_idempotency_key(prefix: str = "oc") -> str:
    """A fresh key (``[A-Za-z0-9._:-]``, well under 128 characters)."""
    return f"{prefix}-{uuid.uuid4().hex}"


def line_item(item: LineItemLike) -> common_pb2.LineItem:
    """``LineItem``, ``(sku, unit_price, quantity)`` or ``(sku, category, unit_price, quantity)``."""
    if isinstance(item, common_pb2.LineItem):
        return item
    if len(item) == 3:
        sku, unit_price, quantity = item
        return common_pb2.LineItem(sku=sku, unit_price=unit_price, quantity=quantity)
    sku, category, unit_price, quantity = item
    return common_pb2.LineItem(sku=sku, category=category, unit_price=unit_price, quantity=quantity)


def refund_item(item: RefundItemLike) -> engine_pb2.RefundItem:
    if isinstance(item, engine_pb2.RefundItem):
        return item
    sku, quantity = item
    return engine_pb2.RefundItem(sku=sku, quantity=quantity)


def build_charge_request(
    user_id: int,
    order_id: str,
    merchant_id: str,
    amount: int,
    *,
    idempotency_key: str,
    items: Iterable[LineItemLike] = (),
    coupon_ids: Iterable[str] = (),
    points: int = 0,
    coins: int = 0,
    gift_card_codes: Iterable[str] = (),
    authorize_only: bool = False,
    step_up_verified: bool = False,
    channel_id: str = "",
    business_line: str = "",
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.ChargeRequest:
    return engine_pb2.ChargeRequest(
        idempotency_key=idempotency_key,
        user_id=user_id,
        order_id=order_id,
        merchant_id=merchant_id,
        channel_id=channel_id,
        amount=amount,
        items=[line_item(item) for item in items],
        coupon_ids=list(coupon_ids),
        points=points,
        coins=coins,
        gift_card_codes=list(gift_card_codes),
        authorize_only=authorize_only,
        step_up_verified=step_up_verified,
        context=context,
        currency=currency,
        business_line=business_line,
    )


def build_refund_request(
    charge_id: str,
    amount: int = 0,
    *,
    idempotency_key: str,
    items: Iterable[RefundItemLike] = (),
    reason: str = "",
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RefundRequest:
    return engine_pb2.RefundRequest(
        idempotency_key=idempotency_key,
        charge_id=charge_id,
        amount=amount,
        items=[refund_item(item) for item in items],
        reason=reason,
        context=context,
        currency=currency,
    )


def build_redeem_coupon_request(
    code: str,
    order_amount: int,
    merchant_id: str,
    *,
    idempotency_key: str,
    items: Iterable[LineItemLike] = (),
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RedeemRequest:
    return engine_pb2.RedeemRequest(
        idempotency_key=idempotency_key,
        merchant_id=merchant_id,
        context=context,
        currency=currency,
        coupon_code=engine_pb2.CouponCodeRedemption(
            code=code, order_amount=order_amount, items=[line_item(item) for item in items]
        ),
    )


def build_redeem_gift_card_request(
    code: str,
    amount: int,
    merchant_id: str,
    *,
    idempotency_key: str,
    context: common_pb2.RequestContext | None = None,
    currency: str = "",
) -> engine_pb2.RedeemRequest:
    return engine_pb2.RedeemRequest(
        idempotency_key=idempotency_key,
        merchant_id=merchant_id,
        context=context,
        currency=currency,
        gift_card=engine_pb2.GiftCardRedemption(code=code, amount=amount),
    )


def build_gift_card_issue_request(
    user_id: int,
    amount: int,
    *,
    idempotency_key: str,
    code: str = "",
    payment_channel: str = "",
    channel_txn_id: str = "",
    ttl_days: int = 0,
    context: common_pb2.RequestContext | None = None,
) -> engine_pb2.IssueRequest:
    """A new gift card (no ``code``) or a reload of ``code``: sold through ``payment_channel``,
    or promotional when it is empty."""
    return engine_pb2.IssueRequest(
        idempotency_key=idempotency_key,
        user_id=user_id,
        context=context,
        gift_card=engine_pb2.GiftCardIssue(
            amount=amount,
            code=code,
            payment_channel=payment_channel,
            channel_txn_id=channel_txn_id,
            ttl_days=ttl_days,
        ),
    )
