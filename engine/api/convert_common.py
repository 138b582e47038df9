"""Proto <-> domain conversions for the messages and enums of ``common.proto`` (wallets, charges,
transactions, assets, times). Pure data mapping; every rule stays in the service layer."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from coffer.v1 import common_pb2
from engine.domain import commands
from engine.domain.errors import invalid_argument
from engine.domain.money import Asset
from engine.domain.results import (
    BalanceView,
    Breakdown,
    ChargeView,
    CouponView,
    GiftCardView,
    PointsLotView,
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
