"""Coupon legs of a charge: which coupons apply, what each takes off, and what happens to them
when the charge is captured, voided, expires or is fully refunded (CONTRACT §3).

* :func:`resolve_coupon_discounts` (planning, also QuoteCharge): the named coupons must be the
  user's own (COUPON_NOT_FOUND), usable now (COUPON_EXPIRED / COUPON_NOT_ACTIVE /
  COUPON_ALREADY_USED / COUPON_FROZEN), stackable together (COUPONS_NOT_STACKABLE) and applicable
  to the cart (COUPON_NOT_APPLICABLE / MIN_SPEND_NOT_MET); the rules live in
  :mod:`engine.domain.coupons.rules`. The rows are locked here, sorted by id — before the gift
  cards the plan locks next — so the engine's lock order holds.
* :func:`take_coupons`: ACTIVATED → USED (an immediate charge) or LOCKED (``authorize_only``),
  each by a conditional UPDATE, so a coupon held or used by another charge can never be taken
  twice. Returns each item's share of the discount for ``charge_items``.
* Capture → :func:`settle_coupons` (LOCKED → USED); Void and hold expiry → :func:`release_coupons`
  (LOCKED → ACTIVATED); the full refund of the order → :func:`after_full_refund`.

Ledger: the discount is the platform's marketing cost paid to the merchant,
``coupon_expense -> merchant_payable:<merchant>`` (CASH), posted when the coupon is USED (an
immediate charge, a capture, a till redemption) and reversed by the full refund of its order.
An authorization posts nothing for its coupons; a void or expiry has nothing to undo.
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
from engine.service.legs import LegScope
from engine.storage.charges import LegRow, read_legs
from engine.storage.coupons import (
    change_state,
    coupon_not_found,
    lock_coupons,
    read_templates,
    state_now,
)
from engine.storage.schema import charge_legs

COUPON_LEG = "COUPON"


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
        state = state_now(row, now_us)
        reason = unusable_reason(state)
        if reason is not None:
            raise CofferError(
                reason,
                f"coupon {coupon_id} is {state.value}",
                metadata={"coupon_id": coupon_id, "state": state.value, "field": f"coupon_ids[{index}]"},
            )
        usable.append((row, _template(templates, row)))
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


def expense(scope: LegScope, coupon_id: str, amount: int) -> None:
    """The platform pays the merchant a coupon's discount."""
    scope.posting.move(
        system_entry(COUPON_EXPENSE, Asset.CASH, amount, instrument=coupon_id),
        system_entry(merchant_payable(scope.merchant_id), Asset.CASH, amount, instrument=coupon_id),
    )


def take_coupons(scope: LegScope, plan: ChargePlan, command: ChargeCommand, *, hold: bool) -> tuple[int, ...]:
    """Take the planned coupons; returns each of ``command.items``' share of the discount
    (empty when the order has no items)."""
    if not plan.coupon_discounts:
        return tuple(0 for _ in command.items)
    connection = scope.connection
    coupons = usable_coupons(connection, command.user_id, command.coupon_ids, scope.now_us)
    applied = apply_or_refuse(charge_cart(command), coupons)
    planned = {item.instrument: item.amount for item in plan.coupon_discounts}
    event = CouponEvent.AUTHORIZE if hold else CouponEvent.USE
    for (row, _template), discount in sorted(
        zip(coupons, applied.discounts, strict=True), key=lambda pair: pair[0][0].coupon_id
    ):
        require(planned.get(row.coupon_id) == discount, "a coupon takes what the plan said")
        change_state(connection, row, event, scope.now_us, charge_id=scope.charge_id)
        if not hold:
            expense(scope, row.coupon_id, discount)
    return applied.line_shares if command.items else ()


def _coupon_legs(connection: Connection, charge_id: str) -> list[LegRow]:
    return sorted(
        (leg for leg in read_legs(connection, charge_id) if leg.kind == COUPON_LEG),
        key=lambda leg: leg.instrument,
    )


def _mark_leg(connection: Connection, charge_id: str, leg: LegRow, **values: int) -> None:
    connection.execute(
        charge_legs.update()
        .where(charge_legs.c.charge_id == charge_id, charge_legs.c.leg_index == leg.leg_index)
        .values(**values)
    )


def _locked(rows: dict[str, Row[Any]], coupon_id: str, charge_id: str) -> Row[Any]:
    row = rows.get(coupon_id)
    if row is None:
        raise InvariantViolation(f"coupon {coupon_id} of charge {charge_id} is missing")
    return row


def _template(templates: dict[str, CouponTemplate], row: Row[Any]) -> CouponTemplate:
    template = templates.get(row.template_id)
    if template is None:
        raise InvariantViolation(f"coupon {row.coupon_id}'s template {row.template_id} is missing")
    return template


def settle_coupons(scope: LegScope, charge_id: str) -> None:
    """Capture: the charge's LOCKED coupons become USED, and their discount is expensed."""
    connection = scope.connection
    legs = [
        leg
        for leg in _coupon_legs(connection, charge_id)
        if not leg.captured_value and not leg.released_value
    ]
    rows = lock_coupons(connection, [leg.instrument for leg in legs])
    for leg in legs:
        row = _locked(rows, leg.instrument, charge_id)
        change_state(connection, row, CouponEvent.CAPTURE, scope.now_us, charge_id=charge_id)
        expense(scope, leg.instrument, leg.value)
        _mark_leg(connection, charge_id, leg, captured_value=leg.value, captured_units=leg.units)


def release_coupons(scope: LegScope, charge_id: str) -> None:
    """Void or hold expiry: the charge's LOCKED coupons become ACTIVATED again (nothing was
    posted for them at authorization, so there is nothing to reverse)."""
    connection = scope.connection
    legs = [
        leg
        for leg in _coupon_legs(connection, charge_id)
        if not leg.captured_value and not leg.released_value
    ]
    rows = lock_coupons(connection, [leg.instrument for leg in legs])
    for leg in legs:
        row = _locked(rows, leg.instrument, charge_id)
        change_state(
            connection,
            row,
            CouponEvent.RELEASE,
            scope.now_us,
            charge_id="",
            reference=charge_id,
        )
        _mark_leg(connection, charge_id, leg, released_value=leg.value, released_units=leg.units)


def after_full_refund(scope: LegScope, charge_id: str) -> None:
    """The whole order has been refunded: each of its USED coupons becomes ACTIVATED (still
    valid and its template restores on refund), EXPIRED (validity ended) or REFUNDED; the
    merchant gives the discount back to the coupon-expense account."""
    connection = scope.connection
    legs = [leg for leg in _coupon_legs(connection, charge_id) if leg.captured_value > leg.refunded_value]
    rows = lock_coupons(connection, [leg.instrument for leg in legs])
    templates = read_templates(connection, [row.template_id for row in rows.values()])
    for leg in legs:
        row = _locked(rows, leg.instrument, charge_id)
        change_state(
            connection,
            row,
            CouponEvent.FULL_REFUND,
            scope.now_us,
            charge_id="",
            reference=charge_id,
            restore_on_refund=_template(templates, row).restore_on_refund,
        )
        refunded = leg.captured_value - leg.refunded_value
        scope.posting.move(
            system_entry(
                merchant_payable(scope.merchant_id), Asset.CASH, refunded, instrument=leg.instrument
            ),
            system_entry(COUPON_EXPENSE, Asset.CASH, refunded, instrument=leg.instrument),
        )
        _mark_leg(
            connection,
            charge_id,
            leg,
            refunded_value=leg.captured_value,
            refunded_units=leg.captured_units,
        )
