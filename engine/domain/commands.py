"""Requests as plain data: what the API layer builds from a proto and the services consume.

Commands are validated on construction by :mod:`engine.domain.validation`; the fields here are
the contract's, in minor units. ``context`` never takes part in idempotency comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.money import Asset


@dataclass(frozen=True)
class RequestContext:
    ip: str = ""
    ip_city: str = ""
    device_id: str = ""
    phone_hash: str = ""
    channel: str = ""
    operator_id: str = ""
    member_level: int = 0
    registered_at_us: int | None = None


@dataclass(frozen=True)
class TopUpSpec:
    amount: int
    asset: Asset
    payment_channel: str
    channel_txn_id: str


@dataclass(frozen=True)
class PointsSpec:
    points: int
    ttl_days: int
    reason: str


@dataclass(frozen=True)
class CoinsSpec:
    coins: int
    reason: str


@dataclass(frozen=True)
class CouponClaimSpec:
    template_id: str


@dataclass(frozen=True)
class GiftCardSpec:
    amount: int
    code: str
    payment_channel: str
    channel_txn_id: str
    ttl_days: int = 0


@dataclass(frozen=True)
class ActivitySpec:
    activity_id: str


IssueSpec = TopUpSpec | PointsSpec | CoinsSpec | CouponClaimSpec | GiftCardSpec | ActivitySpec


@dataclass(frozen=True)
class IssueCommand:
    idempotency_key: str
    user_id: int
    spec: IssueSpec
    context: RequestContext = field(default_factory=RequestContext)


@dataclass(frozen=True)
class LineItem:
    sku: str
    category: str
    unit_price: int
    quantity: int
    business_line: str = ""

    @property
    def total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class ChargeCommand:
    idempotency_key: str
    user_id: int
    order_id: str
    merchant_id: str
    channel_id: str
    amount: int
    items: tuple[LineItem, ...] = ()
    coupon_ids: tuple[str, ...] = ()
    points: int = 0
    coins: int = 0
    gift_card_codes: tuple[str, ...] = ()
    authorize_only: bool = False
    step_up_verified: bool = False
    business_line: str = ""
    context: RequestContext = field(default_factory=RequestContext)


@dataclass(frozen=True)
class CaptureCommand:
    idempotency_key: str
    charge_id: str
    amount: int
    context: RequestContext = field(default_factory=RequestContext)


@dataclass(frozen=True)
class VoidCommand:
    idempotency_key: str
    charge_id: str
    context: RequestContext = field(default_factory=RequestContext)


@dataclass(frozen=True)
class RefundItem:
    sku: str
    quantity: int


@dataclass(frozen=True)
class RefundCommand:
    idempotency_key: str
    charge_id: str
    amount: int
    items: tuple[RefundItem, ...] = ()
    reason: str = ""
    context: RequestContext = field(default_factory=RequestContext)
    #: Set for a caller bound to one merchant (a till): only that merchant's charges may be
    #: refunded (CONTRACT §3 Security). ``None``: any merchant's.
    merchant_scope: str | None = None


@dataclass(frozen=True)
class CouponCodeRedemptionSpec:
    code: str
    order_amount: int
    items: tuple[LineItem, ...] = ()


@dataclass(frozen=True)
class GiftCardRedemptionSpec:
    code: str
    amount: int


@dataclass(frozen=True)
class PointsExchangeSpec:
    user_id: int
    points: int


RedeemSpec = CouponCodeRedemptionSpec | GiftCardRedemptionSpec | PointsExchangeSpec


@dataclass(frozen=True)
class RedeemCommand:
    idempotency_key: str
    merchant_id: str
    spec: RedeemSpec
    context: RequestContext = field(default_factory=RequestContext)


@dataclass(frozen=True)
class AdjustCommand:
    idempotency_key: str
    user_id: int
    asset: Asset
    amount: int
    reason: str
    operator_id: str


@dataclass(frozen=True)
class FreezeAccountCommand:
    idempotency_key: str
    user_id: int
    frozen: bool
    reason: str
    operator_id: str = ""
