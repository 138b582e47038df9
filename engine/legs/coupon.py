"""Coupon legs of a charge: which coupons apply, what each takes off, and how each moves
(CONTRACT §3).

* Planning (:func:`resolve_coupon_discounts`, also QuoteCharge): the named coupons must be the
  user's own (COUPON_NOT_FOUND), usable now (COUPON_EXPIRED / COUPON_NOT_ACTIVE /
  COUPON_ALREADY_USED / COUPON_FROZEN), stackable together (COUPONS_NOT_STACKABLE) and applicable
  to the cart (COUPON_NOT_APPLICABLE / MIN_SPEND_NOT_MET); the rules live in
  :mod:`engine.domain.coupons.rules`. The rows are locked here, sorted by id — before the gift
  cards the plan locks next — so the engine's lock order holds.
* The four movements, one coupon leg at a time, each a state change in
  :mod:`engine.domain.coupons.states` by a conditional UPDATE (so a coupon held or used by another
  charge can never be taken twice): *take* ACTIVATED → USED (an immediate charge, a till
  redemption) or LOCKED (``authorize_only``); *settle* (Capture) LOCKED → USED; *release* (Void,
  hold expiry) LOCKED → ACTIVATED; *give back* (the refund completing its order) USED →
  ACTIVATED / EXPIRED / REFUNDED.

Ledger: the discount is the platform's marketing cost paid to the merchant,
``coupon_expense -> merchant_payable:<merchant>`` (CASH), posted when the coupon is USED (take
without hold, settle) and reversed when it is given back. An authorization posts nothing for its
coupons; a release has nothing to undo.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from engine.domain.charge_plan import ChargePlan
from engine.domain.commands import ChargeCommand
from engine.domain.coupons.definitions import CouponTemplate
from engine.domain.coupons.rules import Applied, Cart, apply_coupons, cart_of
from engine.domain.coupons.states import CouponEvent, unusable_reason
from engine.domain.errors import CofferError, InvariantViolation, require
from engine.domain.ledger import COUPON_EXPENSE, merchant_payable, system_entry
from engine.domain.money import Asset
from engine.domain.results import InstrumentAmount
from engine.legs.protocol import LegMove, LegScope
from engine.storage.coupon_templates import read_templates
from engine.storage.coupons import change_state, coupon_not_found, lock_coupons, state_now

__all__ = [
    "CouponHandler",
    "apply_or_refuse",
    "charge_cart",
    "coupon_line_shares",
    "refuse_unusable",
    "resolve_coupon_discounts",
    "template_of",
    "usable_coupons",
]


def refuse_unusable(row: Row[Any], now_us: int, field: str) -> None:
    """COUPON_EXPIRED / COUPON_NOT_ACTIVE / COUPON_ALREADY_USED / COUPON_FROZEN unless usable now."""
    state = state_now(row, now_us)
    reason = unusable_reason(state)
    if reason is not None:
        raise CofferError(
            reason,
            f"coupon {row.coupon_id} is {state.value}",
            metadata={"coupon_id": row.coupon_id, "state": state.value, "field": field},
        )


def template_of(templates: dict[str, CouponTemplate], row: Row[Any]) -> CouponTemplate:
    template = templates.get(row.template_id)
    if template is None:
        raise InvariantViolation(f"coupon {row.coupon_id}'s template {row.template_id} is missing")
    return template


def usable_coupons(
    connection: Connection, user_id: int, coupon_ids: tuple[str, ...], now_us: int
) -> list[tuple[Row[Any], CouponTemplate]]:
    """The named coupons, locked, in the order named — each the user's own and usable now."""
    rows = lock_coupons(connection, coupon_ids)
    templates = read_templates(connection, [row.template_id for row in rows.values()])
    usable: list[tuple[Row[Any], CouponTemplate]] = []
    for index, coupon_id in enumerate(coupon_ids):
        row = rows.get(coupon_id)
        if row is None or row.user_id != user_id:
            raise coupon_not_found(coupon_id, f"coupon_ids[{index}]")
        refuse_unusable(row, now_us, f"coupon_ids[{index}]")
        usable.append((row, template_of(templates, row)))
    return usable


def charge_cart(command: ChargeCommand) -> Cart:
    return cart_of(command.amount, command.items, command.merchant_id, command.business_line)


def apply_or_refuse(cart: Cart, coupons: list[tuple[Row[Any], CouponTemplate]]) -> Applied:
    outcome = apply_coupons(cart, [(row.coupon_id, template.rules) for row, template in coupons])
    if isinstance(outcome, Applied):
        return outcome
    coupon_id, rejection = outcome
    raise rejection.error(coupon_id)


def resolve_coupon_discounts(
    connection: Connection, command: ChargeCommand, now_us: int
) -> list[InstrumentAmount]:
    if not command.coupon_ids:
        return []
    coupons = usable_coupons(connection, command.user_id, command.coupon_ids, now_us)
    applied = apply_or_refuse(charge_cart(command), coupons)
    return [
        InstrumentAmount(row.coupon_id, discount)
        for (row, _template), discount in zip(coupons, applied.discounts, strict=True)
    ]


def coupon_line_shares(
    connection: Connection, plan: ChargePlan, command: ChargeCommand, now_us: int
) -> tuple[int, ...]:
    """Each of ``command.items``' share of the plan's discount (empty when the order has no
    items or no coupons), re-checked against the locked coupons."""
    if not plan.coupon_discounts:
        return ()
    coupons = usable_coupons(connection, command.user_id, command.coupon_ids, now_us)
    applied = apply_or_refuse(charge_cart(command), coupons)
    planned = {item.instrument: item.amount for item in plan.coupon_discounts}
    for (row, _template), discount in zip(coupons, applied.discounts, strict=True):
        require(planned.get(row.coupon_id) == discount, "a coupon takes what the plan said")
    return applied.line_shares if command.items else ()


def _locked(scope: LegScope, leg: LegMove) -> Row[Any]:
    row = lock_coupons(scope.connection, [leg.instrument]).get(leg.instrument)
    if row is None:
        raise InvariantViolation(f"coupon {leg.instrument} of charge {scope.charge_id} is missing")
    return row


def _expense(scope: LegScope, leg: LegMove) -> None:
    """The platform pays the merchant a coupon's discount."""
    scope.posting.move(
        system_entry(COUPON_EXPENSE, Asset.CASH, leg.value, instrument=leg.instrument),
        system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value, instrument=leg.instrument),
    )


class CouponHandler:
    def take(self, scope: LegScope, leg: LegMove, *, hold: bool) -> None:
        event = CouponEvent.AUTHORIZE if hold else CouponEvent.USE
        change_state(scope.connection, _locked(scope, leg), event, scope.now_us, charge_id=scope.charge_id)
        if not hold:
            _expense(scope, leg)

    def settle(self, scope: LegScope, leg: LegMove) -> None:
        """Capture: the LOCKED coupon becomes USED, and its discount is expensed."""
        row = _locked(scope, leg)
        change_state(scope.connection, row, CouponEvent.CAPTURE, scope.now_us, charge_id=scope.charge_id)
        _expense(scope, leg)

    def release(self, scope: LegScope, leg: LegMove) -> None:
        """Void or hold expiry: the LOCKED coupon becomes ACTIVATED again (nothing was posted for
        it at authorization, so there is nothing to reverse)."""
        change_state(
            scope.connection,
            _locked(scope, leg),
            CouponEvent.RELEASE,
            scope.now_us,
            charge_id="",
            reference=scope.charge_id,
        )

    def give_back(self, scope: LegScope, leg: LegMove) -> None:
        """The whole order has been refunded: the USED coupon becomes ACTIVATED (still valid and
        its template restores on refund), EXPIRED (validity ended) or REFUNDED; the merchant gives
        the discount back to the coupon-expense account."""
        row = _locked(scope, leg)
        templates = read_templates(scope.connection, [row.template_id])
        change_state(
            scope.connection,
            row,
            CouponEvent.FULL_REFUND,
            scope.now_us,
            charge_id="",
            reference=scope.charge_id,
            restore_on_refund=template_of(templates, row).restore_on_refund,
        )
        scope.posting.move(
            system_entry(
                merchant_payable(scope.merchant_id), Asset.CASH, leg.value, instrument=leg.instrument
            ),
            system_entry(COUPON_EXPENSE, Asset.CASH, leg.value, instrument=leg.instrument),
        )
