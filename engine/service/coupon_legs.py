"""Coupon legs of a charge: which coupons apply and what each takes off.

Coupons arrive with the coupon issue; until then a charge naming one is refused as
UNIMPLEMENTED rather than silently ignored.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.charge_plan import ChargePlan
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, Reason
from engine.domain.results import InstrumentAmount
from engine.service.legs import LegScope


def resolve_coupon_discounts(
    connection: Connection, command: ChargeCommand, now_us: int
) -> list[InstrumentAmount]:
    if command.coupon_ids:
        raise CofferError(Reason.NOT_IMPLEMENTED, "coupons in charges are not available yet")
    return []


def take_coupons(scope: LegScope, plan: ChargePlan, command: ChargeCommand, *, hold: bool) -> None:
    if plan.coupon_discounts:
        raise CofferError(Reason.NOT_IMPLEMENTED, "coupons in charges are not available yet")


def after_full_refund(scope: LegScope, charge_id: str) -> None:
    """A fully refunded order's coupons leave USED (CONTRACT §3 state table).

    No charge holds a coupon until coupons arrive, so there is nothing to move yet.
    """


def settle_coupons(scope: LegScope, charge_id: str) -> None:
    """Capture: the charge's LOCKED coupons become USED, and their discount is expensed.

    No charge holds a coupon until coupons arrive, so there is nothing to move yet.
    """


def release_coupons(scope: LegScope, charge_id: str) -> None:
    """Void or hold expiry: the charge's LOCKED coupons become ACTIVATED again.

    No charge holds a coupon until coupons arrive, so there is nothing to move yet.
    """
