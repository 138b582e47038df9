"""What use cases answer, as plain data. Stored (as JSON) with an idempotency key so a replay
returns exactly the original answer."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.domain.audit_events import BrokenChain


@dataclass(frozen=True)
class BalanceView:
    asset: str
    available: int
    held: int


@dataclass(frozen=True)
class PointsLotView:
    lot_id: str
    points: int
    expires_at_us: int | None
    granted_at_us: int


@dataclass(frozen=True)
class CouponView:
    coupon_id: str
    code: str
    template_id: str
    state: str
    expires_at_us: int | None
    user_id: int = 0


@dataclass(frozen=True)
class GiftCardView:
    code: str
    balance: int
    held: int
    state: str
    expires_at_us: int | None
    user_id: int


@dataclass(frozen=True)
class WalletView:
    user_id: int
    balances: tuple[BalanceView, ...]
    points_lots: tuple[PointsLotView, ...] = ()
    coupons: tuple[CouponView, ...] = ()
    gift_cards: tuple[GiftCardView, ...] = ()
    frozen: bool = False
    points_debt: int = 0


@dataclass(frozen=True)
class InstrumentAmount:
    """An amount drawn from (or returned to) one instrument: a gift card code or a coupon id."""

    instrument: str
    amount: int


@dataclass(frozen=True)
class Breakdown:
    discount: int = 0
    points_used: int = 0
    points_value: int = 0
    coins_used: int = 0
    gift_card_amount: int = 0
    cash_amount: int = 0
    gift_cards: tuple[InstrumentAmount, ...] = ()
    coupons: tuple[InstrumentAmount, ...] = ()


@dataclass(frozen=True)
class RefundView:
    refund_id: str
    charge_id: str
    amount: int
    reason: str
    created_at_us: int
    breakdown: Breakdown


@dataclass(frozen=True)
class ChargeView:
    charge_id: str
    user_id: int
    order_id: str
    merchant_id: str
    channel_id: str
    amount: int
    status: str
    breakdown: Breakdown
    authorized_amount: int
    captured_amount: int
    refunded_amount: int
    released_amount: int
    hold_expires_at_us: int | None
    created_at_us: int
    transaction_id: str
    refunds: tuple[RefundView, ...] = ()
    coupon_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssueResult:
    transaction_id: str
    wallet: WalletView
    coupons: tuple[CouponView, ...] = ()
    gift_card: GiftCardView | None = None
    replayed: bool = False


@dataclass(frozen=True)
class ChargeResult:
    charge_id: str
    status: str
    breakdown: Breakdown
    wallet: WalletView
    transaction_id: str
    replayed: bool = False


@dataclass(frozen=True)
class ChargeStateResult:
    """Capture and Void answer with the charge as it now stands."""

    charge: ChargeView
    replayed: bool = False


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    charge: ChargeView
    wallet: WalletView
    breakdown: Breakdown
    replayed: bool = False


@dataclass(frozen=True)
class RedeemResult:
    transaction_id: str
    discount: int = 0
    amount: int = 0
    gift_card: GiftCardView | None = None
    wallet: WalletView | None = None
    coupon: CouponView | None = None
    replayed: bool = False


@dataclass(frozen=True)
class EntryView:
    account: str
    asset: str
    amount: int
    instrument: str
    bucket: str


@dataclass(frozen=True)
class TransactionView:
    transaction_id: str
    type: str
    user_id: int
    created_at_us: int
    idempotency_key: str
    charge_id: str
    memo: str
    entries: tuple[EntryView, ...] = ()


@dataclass(frozen=True)
class TransactionPage:
    transactions: tuple[TransactionView, ...]
    next_page_token: str


@dataclass(frozen=True)
class AdjustResult:
    transaction: TransactionView
    wallet: WalletView
    replayed: bool = False


@dataclass(frozen=True)
class AccountStateResult:
    user_id: int
    frozen: bool
    reason: str
    replayed: bool = False


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


@dataclass(frozen=True)
class ShardAuditReport:
    shard: int
    violations: tuple[Violation, ...] = ()
    transactions_checked: int = 0
    accounts_checked: int = 0
    #: Audit-trail rows whose hash chain was recomputed, and the first broken link per user.
    audit_events_checked: int = 0
    broken_chains: tuple[BrokenChain, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class AuditReport:
    shards: tuple[ShardAuditReport, ...] = field(default_factory=tuple)
    checked_at_us: int = 0

    @property
    def ok(self) -> bool:
        return all(shard.ok for shard in self.shards)
