"""Commands and results of the coupon use cases that are not in :mod:`engine.domain.commands` /
:mod:`engine.domain.results` (plain data; results are stored as JSON for idempotent replay)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.results import Breakdown, CouponView


@dataclass(frozen=True)
class TemplateCreated:
    template_id: str
    replayed: bool = False


@dataclass(frozen=True)
class ActivityCreated:
    activity_id: str
    replayed: bool = False


@dataclass(frozen=True)
class FreezeCouponCommand:
    idempotency_key: str
    coupon_id: str
    #: True for FreezeCoupon, False for UnfreezeCoupon.
    frozen: bool
    reason: str = ""
    operator_id: str = ""


@dataclass(frozen=True)
class CouponStateResult:
    coupon: CouponView
    replayed: bool = False


@dataclass(frozen=True)
class CouponRejectionView:
    coupon_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class QuoteResult:
    """QuoteCharge: the request as given (or the reason it would be refused), and the best coupon
    choice for the cart with why each other coupon was left out."""

    breakdown: Breakdown | None
    error_reason: str
    error_detail: str
    best_coupon_ids: tuple[str, ...]
    best_breakdown: Breakdown
    rejected: tuple[CouponRejectionView, ...]
