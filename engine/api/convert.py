"""Proto <-> domain conversions. Pure data mapping; every rule stays in the service layer."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from coffer.v1 import admin_pb2, common_pb2, engine_pb2
from engine.domain import commands
from engine.domain.coupons.definitions import (
    ActivityReward,
    ActivityRules,
    CreateActivityCommand,
    CreateCouponTemplateCommand,
    Eligibility,
)
from engine.domain.coupons.messages import CouponStateResult, FreezeCouponCommand, QuoteResult
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.domain.errors import invalid_argument
from engine.domain.money import Asset
from engine.domain.results import (
    AccountStateResult,
    AdjustResult,
    AuditReport,
    BalanceView,
    Breakdown,
    ChargeView,
    CouponView,
    GiftCardView,
    PointsLotView,
    RedeemResult,
    RefundView,
    TransactionView,
    WalletView,
)

MICROSECONDS_PER_SECOND = 1_000_000

_ASSET_FROM_PROTO = {
    common_pb2.ASSET_CASH: Asset.CASH,
    common_pb2.ASSET_POINTS: Asset.POINTS,
    common_pb2.ASSET_COINS: Asset.COINS,
}
_ASSET_TO_PROTO = {asset: number for number, asset in _ASSET_FROM_PROTO.items()}


def timestamp(microseconds: int | None) -> Timestamp | None:
    if microseconds is None:
        return None
    return Timestamp(
        seconds=microseconds // MICROSECONDS_PER_SECOND,
        nanos=(microseconds % MICROSECONDS_PER_SECOND) * 1000,
    )


def microseconds(value: Timestamp) -> int:
    return value.seconds * MICROSECONDS_PER_SECOND + value.nanos // 1000


def asset_from_proto(value: common_pb2.Asset.ValueType, field: str, *, default: Asset | None = None) -> Asset:
    if value == common_pb2.ASSET_UNSPECIFIED and default is not None:
        return default
    asset = _ASSET_FROM_PROTO.get(value)
    if asset is None:
        raise invalid_argument(field, "must name an asset (ASSET_CASH, ASSET_POINTS, ASSET_COINS)")
    return asset


def asset_to_proto(name: str) -> common_pb2.Asset.ValueType:
    return _ASSET_TO_PROTO[Asset(name)]


def require_currency(requested: str, deployment: str) -> None:
    if requested and requested != deployment:
        raise invalid_argument("currency", f"this deployment moves only {deployment}")


def context_from_proto(value: common_pb2.RequestContext) -> commands.RequestContext:
    return commands.RequestContext(
        ip=value.ip,
        ip_city=value.ip_city,
        device_id=value.device_id,
        phone_hash=value.phone_hash,
        channel=value.channel,
        operator_id=value.operator_id,
        member_level=value.member_level,
        registered_at_us=microseconds(value.registered_at) if value.HasField("registered_at") else None,
    )


def line_items_from_proto(items: object) -> tuple[commands.LineItem, ...]:
    return tuple(
        commands.LineItem(
            sku=item.sku,
            category=item.category,
            unit_price=item.unit_price,
            quantity=item.quantity,
            business_line=item.business_line,
        )
        for item in items  # type: ignore[attr-defined]
    )


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


def refund_from_proto(request: engine_pb2.RefundRequest) -> commands.RefundCommand:
    return commands.RefundCommand(
        idempotency_key=request.idempotency_key,
        charge_id=request.charge_id,
        amount=request.amount,
        items=tuple(commands.RefundItem(item.sku, item.quantity) for item in request.items),
        reason=request.reason,
        context=context_from_proto(request.context),
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


def balance_to_proto(view: BalanceView) -> common_pb2.Balance:
    return common_pb2.Balance(asset=asset_to_proto(view.asset), available=view.available, held=view.held)


def lot_to_proto(view: PointsLotView) -> common_pb2.PointsLot:
    return common_pb2.PointsLot(
        points=view.points,
        expires_at=timestamp(view.expires_at_us),
        lot_id=view.lot_id,
        granted_at=timestamp(view.granted_at_us),
    )


def coupon_to_proto(view: CouponView) -> common_pb2.UserCoupon:
    return common_pb2.UserCoupon(
        coupon_id=view.coupon_id,
        code=view.code,
        template_id=view.template_id,
        state=common_pb2.CouponState.Value(f"COUPON_STATE_{view.state}"),
        expires_at=timestamp(view.expires_at_us),
        user_id=view.user_id,
    )


def gift_card_to_proto(view: GiftCardView) -> common_pb2.GiftCard:
    return common_pb2.GiftCard(
        code=view.code,
        balance=view.balance,
        held=view.held,
        state=common_pb2.GiftCardState.Value(f"GIFT_CARD_STATE_{view.state}"),
        expires_at=timestamp(view.expires_at_us),
        user_id=view.user_id,
    )


def wallet_to_proto(view: WalletView) -> common_pb2.Wallet:
    return common_pb2.Wallet(
        user_id=view.user_id,
        balances=[balance_to_proto(balance) for balance in view.balances],
        points_lots=[lot_to_proto(lot) for lot in view.points_lots],
        coupons=[coupon_to_proto(coupon) for coupon in view.coupons],
        frozen=view.frozen,
        gift_cards=[gift_card_to_proto(card) for card in view.gift_cards],
        points_debt=view.points_debt,
    )


def breakdown_to_proto(view: Breakdown) -> common_pb2.Breakdown:
    return common_pb2.Breakdown(
        discount=view.discount,
        points_used=view.points_used,
        points_value=view.points_value,
        coins_used=view.coins_used,
        gift_card_amount=view.gift_card_amount,
        cash_amount=view.cash_amount,
        gift_cards=[
            common_pb2.GiftCardUse(code=item.instrument, amount=item.amount) for item in view.gift_cards
        ],
        coupons=[
            common_pb2.CouponUse(coupon_id=item.instrument, discount=item.amount) for item in view.coupons
        ],
    )


def refund_record_to_proto(view: RefundView) -> common_pb2.RefundRecord:
    return common_pb2.RefundRecord(
        refund_id=view.refund_id,
        charge_id=view.charge_id,
        amount=view.amount,
        reason=view.reason,
        created_at=timestamp(view.created_at_us),
        breakdown=breakdown_to_proto(view.breakdown),
    )


def charge_to_proto(view: ChargeView) -> common_pb2.Charge:
    return common_pb2.Charge(
        charge_id=view.charge_id,
        user_id=view.user_id,
        order_id=view.order_id,
        merchant_id=view.merchant_id,
        channel_id=view.channel_id,
        amount=view.amount,
        status=common_pb2.ChargeStatus.Value(f"CHARGE_STATUS_{view.status}"),
        breakdown=breakdown_to_proto(view.breakdown),
        authorized_amount=view.authorized_amount,
        captured_amount=view.captured_amount,
        refunded_amount=view.refunded_amount,
        released_amount=view.released_amount,
        hold_expires_at=timestamp(view.hold_expires_at_us),
        created_at=timestamp(view.created_at_us),
        refunds=[refund_record_to_proto(refund) for refund in view.refunds],
        coupon_ids=list(view.coupon_ids),
        transaction_id=view.transaction_id,
    )


def charge_status_to_proto(status: str) -> common_pb2.ChargeStatus.ValueType:
    return common_pb2.ChargeStatus.Value(f"CHARGE_STATUS_{status}")


def transaction_to_proto(view: TransactionView) -> common_pb2.Transaction:
    return common_pb2.Transaction(
        transaction_id=view.transaction_id,
        type=common_pb2.TransactionType.Value(f"TRANSACTION_TYPE_{view.type}"),
        user_id=view.user_id,
        created_at=timestamp(view.created_at_us),
        idempotency_key=view.idempotency_key,
        charge_id=view.charge_id,
        memo=view.memo,
        entries=[
            common_pb2.LedgerEntry(
                account=entry.account,
                asset=asset_to_proto(entry.asset),
                amount=entry.amount,
                instrument=entry.instrument,
                bucket=entry.bucket,
            )
            for entry in view.entries
        ],
    )


def adjust_to_proto(result: AdjustResult) -> admin_pb2.AdjustResponse:
    return admin_pb2.AdjustResponse(
        transaction=transaction_to_proto(result.transaction),
        replayed=result.replayed,
        wallet=wallet_to_proto(result.wallet),
    )


def account_state_to_proto(result: AccountStateResult) -> admin_pb2.AccountState:
    return admin_pb2.AccountState(
        user_id=result.user_id, frozen=result.frozen, reason=result.reason, replayed=result.replayed
    )


def audit_to_proto(report: AuditReport) -> admin_pb2.AuditReport:
    return admin_pb2.AuditReport(
        ok=report.ok,
        checked_at=timestamp(report.checked_at_us),
        shards=[
            admin_pb2.ShardAudit(
                shard=shard.shard,
                ok=shard.ok,
                violations=[
                    admin_pb2.InvariantViolation(invariant=violation.invariant, detail=violation.detail)
                    for violation in shard.violations
                ],
                transactions_checked=shard.transactions_checked,
                accounts_checked=shard.accounts_checked,
            )
            for shard in report.shards
        ],
    )


# --- coupons and activities (docs/coupons.md) -----------------------------------------------

_COUPON_TYPE_FROM_PROTO = {
    common_pb2.COUPON_TYPE_FIXED_OFF: CouponType.FIXED_OFF,
    common_pb2.COUPON_TYPE_PERCENT_OFF: CouponType.PERCENT_OFF,
    common_pb2.COUPON_TYPE_NO_THRESHOLD: CouponType.NO_THRESHOLD,
}


def _optional_time(message: object, field: str) -> int | None:
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return microseconds(getattr(message, field))


def template_from_proto(request: admin_pb2.CreateCouponTemplateRequest) -> CreateCouponTemplateCommand:
    return CreateCouponTemplateCommand(
        idempotency_key=request.idempotency_key,
        name=request.name,
        type=_COUPON_TYPE_FROM_PROTO.get(request.type),
        amount_off=request.amount_off,
        discount_bps=request.discount_bps,
        min_spend=request.min_spend,
        max_discount=request.max_discount,
        total_stock=request.total_stock,
        per_user_limit=request.per_user_limit,
        valid_from_us=_optional_time(request, "valid_from"),
        valid_until_us=_optional_time(request, "valid_until"),
        valid_days_after_claim=request.valid_days_after_claim,
        scope=CouponScope(
            categories=tuple(request.scope.categories),
            merchants=tuple(request.scope.merchants),
            business_lines=tuple(request.scope.business_lines),
        ),
        stackable=request.stackable,
        restore_on_refund=request.restore_on_refund if request.HasField("restore_on_refund") else True,
        eligibility=Eligibility(
            new_users_only=request.eligibility.new_users_only,
            new_user_days=request.eligibility.new_user_days,
            min_member_level=request.eligibility.min_member_level,
        ),
    )


def activity_from_proto(request: admin_pb2.CreateActivityRequest) -> CreateActivityCommand:
    rules = request.rules
    return CreateActivityCommand(
        idempotency_key=request.idempotency_key,
        name=request.name,
        rewards=tuple(
            ActivityReward(
                template_id=reward.template_id,
                quantity=reward.quantity,
                points=reward.points,
                points_ttl_days=reward.points_ttl_days,
            )
            for reward in request.rewards
        ),
        rules=ActivityRules(
            device_blacklist=tuple(rules.device_blacklist),
            ip_cities=tuple(rules.ip_cities),
            new_users_only=rules.new_users_only,
            min_member_level=rules.min_member_level,
            phone_blacklist=tuple(rules.phone_blacklist),
        ),
        valid_from_us=_optional_time(request, "valid_from"),
        valid_until_us=_optional_time(request, "valid_until"),
    )


def freeze_coupon_from_proto(request: admin_pb2.FreezeCouponRequest, *, frozen: bool) -> FreezeCouponCommand:
    return FreezeCouponCommand(
        idempotency_key=request.idempotency_key,
        coupon_id=request.coupon_id,
        frozen=frozen,
        reason=request.reason,
        operator_id=request.operator_id,
    )


def coupon_state_to_proto(result: CouponStateResult) -> admin_pb2.CouponStateResponse:
    return admin_pb2.CouponStateResponse(coupon=coupon_to_proto(result.coupon), replayed=result.replayed)


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
