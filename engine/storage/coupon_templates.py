"""Coupon templates: written to every shard by Admin.CreateCouponTemplate, read on the shard of
every claim, charge and refund that uses one."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from engine.domain.coupons.definitions import CouponTemplate, Eligibility
from engine.domain.coupons.rules import CouponRules, CouponScope, CouponType
from engine.domain.errors import CofferError, Reason
from engine.storage.dialect import insert_or_ignore
from engine.storage.json_columns import dump_json
from engine.storage.schema import coupon_templates

__all__ = ["insert_template", "read_template", "read_templates", "template_not_found", "template_of_row"]


def insert_template(connection: Connection, template: CouponTemplate, now_us: int) -> bool:
    """Store ``template`` on this shard; False when it is already there."""
    rules = template.rules
    return insert_or_ignore(
        connection,
        coupon_templates,
        {
            "template_id": template.template_id,
            "name": template.name,
            "type": rules.type.value,
            "amount_off": rules.amount_off,
            "discount_bps": rules.discount_bps,
            "min_spend": rules.min_spend,
            "max_discount": rules.max_discount,
            "total_stock": template.total_stock,
            "per_user_limit": template.per_user_limit,
            "valid_from_us": template.valid_from_us,
            "valid_until_us": template.valid_until_us,
            "valid_days_after_claim": template.valid_days_after_claim,
            "scope": dump_json(
                {
                    "categories": list(rules.scope.categories),
                    "merchants": list(rules.scope.merchants),
                    "business_lines": list(rules.scope.business_lines),
                }
            ),
            "stackable": rules.stackable,
            "restore_on_refund": template.restore_on_refund,
            "eligibility": dump_json(
                {
                    "new_users_only": template.eligibility.new_users_only,
                    "new_user_days": template.eligibility.new_user_days,
                    "min_member_level": template.eligibility.min_member_level,
                }
            ),
            "created_at_us": now_us,
        },
    )


def template_of_row(row: Row[Any]) -> CouponTemplate:
    scope = json.loads(row.scope)
    eligibility = json.loads(row.eligibility)
    return CouponTemplate(
        template_id=row.template_id,
        name=row.name,
        rules=CouponRules(
            type=CouponType(row.type),
            amount_off=int(row.amount_off),
            discount_bps=int(row.discount_bps),
            min_spend=int(row.min_spend),
            max_discount=int(row.max_discount),
            scope=CouponScope(
                categories=tuple(scope["categories"]),
                merchants=tuple(scope["merchants"]),
                business_lines=tuple(scope["business_lines"]),
            ),
            stackable=bool(row.stackable),
        ),
        total_stock=int(row.total_stock),
        per_user_limit=int(row.per_user_limit),
        valid_from_us=row.valid_from_us,
        valid_until_us=row.valid_until_us,
        valid_days_after_claim=int(row.valid_days_after_claim),
        restore_on_refund=bool(row.restore_on_refund),
        eligibility=Eligibility(
            new_users_only=bool(eligibility["new_users_only"]),
            new_user_days=int(eligibility["new_user_days"]),
            min_member_level=int(eligibility["min_member_level"]),
        ),
    )


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_TEMPLATE = select(coupon_templates).where(coupon_templates.c.template_id == bindparam("p_template_id"))
_TEMPLATES = select(coupon_templates).where(
    coupon_templates.c.template_id.in_(bindparam("p_template_ids", expanding=True))
)


def read_template(connection: Connection, template_id: str) -> CouponTemplate | None:
    row = connection.execute(_TEMPLATE, {"p_template_id": template_id}).one_or_none()
    return None if row is None else template_of_row(row)


def read_templates(connection: Connection, template_ids: Iterable[str]) -> dict[str, CouponTemplate]:
    wanted = sorted(set(template_ids))
    if not wanted:
        return {}
    rows = connection.execute(_TEMPLATES, {"p_template_ids": wanted}).all()
    return {row.template_id: template_of_row(row) for row in rows}


def template_not_found(template_id: str, field: str = "coupon.template_id") -> CofferError:
    return CofferError(
        Reason.TEMPLATE_NOT_FOUND,
        f"no coupon template {template_id!r}",
        metadata={"template_id": template_id, "field": field},
    )
