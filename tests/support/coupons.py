"""Helpers for coupon tests: templates, claims, wallet lookups."""

from __future__ import annotations

import itertools
from typing import Any

from engine.domain.commands import CouponClaimSpec, IssueCommand, RequestContext, TopUpSpec
from engine.domain.coupons.definitions import CreateCouponTemplateCommand
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.domain.money import Asset
from engine.domain.results import CouponView, IssueResult
from engine.service.context import EngineContext
from engine.service.coupon_templates import create_coupon_template
from engine.service.issue import issue
from engine.service.queries import get_wallet

_keys = itertools.count()
DAY_US = 86_400 * 1_000_000


def key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


def template(
    context: EngineContext,
    kind: CouponType = CouponType.FIXED_OFF,
    *,
    amount_off: int = 0,
    discount_bps: int = 0,
    min_spend: int = 0,
    max_discount: int = 0,
    total_stock: int = 1000,
    per_user_limit: int = 5,
    valid_days_after_claim: int = 30,
    valid_until_us: int | None = None,
    scope: CouponScope | None = None,
    stackable: bool = False,
    restore_on_refund: bool = True,
    **extra: Any,
) -> str:
    created = create_coupon_template(
        context,
        CreateCouponTemplateCommand(
            idempotency_key=key("tpl"),
            name=f"{kind.value} test",
            type=kind,
            amount_off=amount_off,
            discount_bps=discount_bps,
            min_spend=min_spend,
            max_discount=max_discount,
            total_stock=total_stock,
            per_user_limit=per_user_limit,
            valid_until_us=valid_until_us,
            valid_days_after_claim=valid_days_after_claim,
            scope=scope or CouponScope(),
            stackable=stackable,
            restore_on_refund=restore_on_refund,
            **extra,
        ),
    )
    return created.template_id


def claim(
    context: EngineContext, user_id: int, template_id: str, idempotency_key: str | None = None
) -> IssueResult:
    return issue(
        context,
        IssueCommand(
            idempotency_key or key("claim"), user_id, CouponClaimSpec(template_id), RequestContext()
        ),
    )


def claim_one(context: EngineContext, user_id: int, template_id: str) -> str:
    return claim(context, user_id, template_id).coupons[0].coupon_id


def top_up(context: EngineContext, user_id: int, amount: int) -> None:
    issue(context, IssueCommand(key("top"), user_id, TopUpSpec(amount, Asset.CASH, "alipay", key("txn"))))


def coupon(context: EngineContext, user_id: int, coupon_id: str) -> CouponView:
    return next(item for item in get_wallet(context, user_id).coupons if item.coupon_id == coupon_id)


def state(context: EngineContext, user_id: int, coupon_id: str) -> str:
    return coupon(context, user_id, coupon_id).state


def cash(context: EngineContext, user_id: int) -> int:
    return next(b.available for b in get_wallet(context, user_id).balances if b.asset == "CASH")
