"""Proto <-> domain conversions for the requests and responses of ``engine.proto``
(``TransactionEngine``). Pure data mapping; every rule stays in the service layer."""

from __future__ import annotations

from collections.abc import Sequence

from coffer.v1 import engine_pb2
from engine.api.convert_common import (
    asset_from_proto,
    breakdown_to_proto,
    charge_status_to_proto,
    context_from_proto,
    coupon_to_proto,
    gift_card_to_proto,
    line_items_from_proto,
    require_currency,
    wallet_to_proto,
)
from engine.domain import commands
from engine.domain.coupons.messages import QuoteResult
from engine.domain.errors import CofferError, invalid_argument
from engine.domain.money import Asset
from engine.domain.results import (
    ChargeResult,
    RedeemResult,
)
from engine.service.issue_batch import ItemOutcome


def issue_from_proto(request: engine_pb2.IssueRequest) -> commands.IssueCommand:
    kind = request.WhichOneof("kind")
    spec: commands.IssueSpec
    if kind == "top_up":
        top_up = request.top_up
        spec = commands.TopUpSpec(
            amount=top_up.amount,
            asset=asset_from_proto(top_up.asset, "top_up.asset", default=Asset.CASH),
            payment_channel=top_up.payment_channel,
            channel_txn_id=top_up.channel_txn_id,
        )
    elif kind == "points":
        spec = commands.PointsSpec(request.points.points, request.points.ttl_days, request.points.reason)
    elif kind == "coins":
        spec = commands.CoinsSpec(request.coins.coins, request.coins.reason)
    elif kind == "coupon":
        spec = commands.CouponClaimSpec(request.coupon.template_id)
    elif kind == "gift_card":
        card = request.gift_card
        spec = commands.GiftCardSpec(
            amount=card.amount,
            code=card.code,
            payment_channel=card.payment_channel,
            channel_txn_id=card.channel_txn_id,
            ttl_days=card.ttl_days,
        )
    elif kind == "activity":
        spec = commands.ActivitySpec(request.activity.activity_id)
    else:
        raise invalid_argument("kind", "name one of top_up, points, coins, coupon, gift_card, activity")
    return commands.IssueCommand(
        idempotency_key=request.idempotency_key,
        user_id=request.user_id,
        spec=spec,
        context=context_from_proto(request.context),
    )


def charge_from_proto(request: engine_pb2.ChargeRequest) -> commands.ChargeCommand:
    return commands.ChargeCommand(
        idempotency_key=request.idempotency_key,
        user_id=request.user_id,
        order_id=request.order_id,
        merchant_id=request.merchant_id,
        channel_id=request.channel_id,
        amount=request.amount,
        items=line_items_from_proto(request.items),
        coupon_ids=tuple(request.coupon_ids),
        points=request.points,
        coins=request.coins,
        gift_card_codes=tuple(request.gift_card_codes),
        authorize_only=request.authorize_only,
        step_up_verified=request.step_up_verified,
        business_line=request.business_line,
        context=context_from_proto(request.context),
    )


def charge_to_proto(result: ChargeResult) -> engine_pb2.ChargeResponse:
    return engine_pb2.ChargeResponse(
        charge_id=result.charge_id,
        status=charge_status_to_proto(result.status),
        breakdown=breakdown_to_proto(result.breakdown),
        replayed=result.replayed,
        wallet=wallet_to_proto(result.wallet),
        transaction_id=result.transaction_id,
    )


def refund_from_proto(
    request: engine_pb2.RefundRequest, *, merchant_scope: str | None = None
) -> commands.RefundCommand:
    """``merchant_scope``: the merchant a till caller is bound to
    (:func:`engine.api.auth.caller_merchant_scope`)."""
    return commands.RefundCommand(
        idempotency_key=request.idempotency_key,
        charge_id=request.charge_id,
        amount=request.amount,
        items=tuple(commands.RefundItem(item.sku, item.quantity) for item in request.items),
        reason=request.reason,
        context=context_from_proto(request.context),
        merchant_scope=merchant_scope,
    )


def capture_from_proto(request: engine_pb2.CaptureRequest) -> commands.CaptureCommand:
    return commands.CaptureCommand(
        idempotency_key=request.idempotency_key,
        charge_id=request.charge_id,
        amount=request.amount,
        context=context_from_proto(request.context),
    )


def void_from_proto(request: engine_pb2.VoidRequest) -> commands.VoidCommand:
    return commands.VoidCommand(
        idempotency_key=request.idempotency_key,
        charge_id=request.charge_id,
        context=context_from_proto(request.context),
    )


def redeem_to_proto(result: RedeemResult) -> engine_pb2.RedeemResponse:
    return engine_pb2.RedeemResponse(
        transaction_id=result.transaction_id,
        discount=result.discount,
        amount=result.amount,
        replayed=result.replayed,
        gift_card=gift_card_to_proto(result.gift_card) if result.gift_card else None,
        wallet=wallet_to_proto(result.wallet) if result.wallet else None,
        coupon=coupon_to_proto(result.coupon) if result.coupon else None,
    )


def redeem_from_proto(request: engine_pb2.RedeemRequest) -> commands.RedeemCommand:
    kind = request.WhichOneof("kind")
    spec: commands.RedeemSpec
    if kind == "coupon_code":
        spec = commands.CouponCodeRedemptionSpec(
            code=request.coupon_code.code,
            order_amount=request.coupon_code.order_amount,
            items=line_items_from_proto(request.coupon_code.items),
        )
    elif kind == "gift_card":
        spec = commands.GiftCardRedemptionSpec(request.gift_card.code, request.gift_card.amount)
    elif kind == "points_exchange":
        spec = commands.PointsExchangeSpec(request.points_exchange.user_id, request.points_exchange.points)
    else:
        raise invalid_argument("kind", "name one of coupon_code, gift_card, points_exchange")
    return commands.RedeemCommand(
        idempotency_key=request.idempotency_key,
        merchant_id=request.merchant_id,
        spec=spec,
        context=context_from_proto(request.context),
    )


def quote_to_proto(result: QuoteResult) -> engine_pb2.QuoteChargeResponse:
    return engine_pb2.QuoteChargeResponse(
        breakdown=breakdown_to_proto(result.breakdown) if result.breakdown else None,
        best_coupon_ids=list(result.best_coupon_ids),
        best_breakdown=breakdown_to_proto(result.best_breakdown),
        rejected=[
            engine_pb2.CouponRejection(coupon_id=item.coupon_id, reason=item.reason, detail=item.detail)
            for item in result.rejected
        ],
        error_reason=result.error_reason,
    )


def issue_batch_items_from_proto(
    request: engine_pb2.IssueBatchRequest, currency: str
) -> list[commands.IssueCommand | CofferError]:
    """Each item as a command, or as the refusal its conversion gave (that item's answer only)."""
    items: list[commands.IssueCommand | CofferError] = []
    for item in request.items:
        try:
            require_currency(item.currency, currency)
            items.append(issue_from_proto(item))
        except CofferError as error:
            items.append(error)
    return items


def issue_batch_to_proto(outcomes: Sequence[ItemOutcome]) -> engine_pb2.IssueBatchResponse:
    return engine_pb2.IssueBatchResponse(
        results=[
            engine_pb2.IssueBatchResult(
                index=outcome.index,
                transaction_id=outcome.transaction_id,
                replayed=outcome.replayed,
                error=_batch_error_to_proto(outcome.error) if outcome.error else None,
            )
            for outcome in outcomes
        ]
    )


def _batch_error_to_proto(error: CofferError) -> engine_pb2.IssueBatchError:
    return engine_pb2.IssueBatchError(
        code=error.reason.code.value,
        reason=error.reason.label,
        metadata=error.metadata,
        message=error.message,
    )
