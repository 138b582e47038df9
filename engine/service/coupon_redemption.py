"""Redeem(coupon_code{code, order_amount, items}) with ``merchant_id``: the till's consume call
(seed 001 ``POST /api/v1/coupon/consume``).

The code carries its virtual shard, so the call routes without a lookup; the idempotency key is
scoped to the coupon's owner. One transaction: the coupon (locked) must be usable now and apply
to the till's cart at that merchant; it becomes USED; the platform pays the merchant the
discount (``coupon_expense -> merchant_payable``, a REDEEM transaction). The till collects the
rest of the order itself — coffer moves only the coupon's value.

The redemption is recorded as a ``charges`` row of kind COUPON_REDEMPTION whose ``charge_id`` is
the returned ``transaction_id``, with one COUPON leg: ``amount = discount`` (the value coffer
moved; the order amount is in the ledger memo), nothing paid, status CAPTURED. ``Refund`` with
that id and ``amount = 0`` refunds the redemption: status REFUNDED, the merchant gives the
discount back, and the coupon leaves USED per the state table (ACTIVATED if still valid and its
template restores on refund, EXPIRED if its validity has ended, else REFUNDED).
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import CouponCodeRedemptionSpec, RedeemCommand
from engine.domain.coupons.rules import Applied, apply_coupons, cart_of
from engine.domain.errors import CofferError, InvariantViolation, Reason, invalid_argument
from engine.domain.leg_kind import LegKind
from engine.domain.money import require_non_negative_amount, require_positive_amount
from engine.domain.results import Breakdown, InstrumentAmount, RedeemResult
from engine.domain.validation import (
    MAX_ITEMS_PER_CHARGE,
    require_idempotency_key,
    require_reference,
)
from engine.legs import LegMove
from engine.legs.coupon import refuse_unusable
from engine.service.context import EngineContext
from engine.service.idempotent import execute_idempotent
from engine.service.till import record_till_redemption
from engine.storage.accounts import require_not_frozen
from engine.storage.coupon_templates import read_template
from engine.storage.coupons import coupon_view, read_coupon_by_code

__all__ = ["redeem_coupon_code"]

KIND = "COUPON_REDEMPTION"


def _validate(command: RedeemCommand, spec: CouponCodeRedemptionSpec) -> str:
    require_idempotency_key(command.idempotency_key)
    require_reference("merchant_id", command.merchant_id, required=True)
    require_positive_amount("coupon_code.order_amount", spec.order_amount)
    if len(spec.items) > MAX_ITEMS_PER_CHARGE:
        raise invalid_argument("coupon_code.items", f"at most {MAX_ITEMS_PER_CHARGE} items")
    if spec.items:
        total = 0
        for index, item in enumerate(spec.items):
            require_reference(f"coupon_code.items[{index}].sku", item.sku, required=True)
            require_non_negative_amount(f"coupon_code.items[{index}].unit_price", item.unit_price)
            if item.quantity <= 0:
                raise invalid_argument(f"coupon_code.items[{index}].quantity", "must be greater than zero")
            total += item.total
        if total != spec.order_amount:
            raise invalid_argument(
                "coupon_code.items", f"items sum to {total}, not the order amount {spec.order_amount}"
            )
    if not spec.code:
        raise invalid_argument("coupon_code.code", "is required")
    code = ids.normalize_code(spec.code)
    if code is None:
        raise invalid_argument(
            "coupon_code.code", "is not a valid coupon code (mistyped or bad check symbol)"
        )
    return code


def _not_found(code: str) -> CofferError:
    return CofferError(
        Reason.COUPON_NOT_FOUND, f"no coupon with code {code}", metadata={"field": "coupon_code.code"}
    )


def redeem_coupon_code(context: EngineContext, command: RedeemCommand) -> RedeemResult:
    spec = command.spec
    if not isinstance(spec, CouponCodeRedemptionSpec):
        raise TypeError("redeem_coupon_code takes Redeem(coupon_code)")
    code = _validate(command, spec)
    shard = context.router.for_code(code)
    if shard is None:
        raise _not_found(code)

    def owner(connection: Connection) -> int:
        row = read_coupon_by_code(connection, code)
        if row is None:
            raise _not_found(code)
        return int(row.user_id)

    return execute_idempotent(
        context,
        shard=shard,
        key=command.idempotency_key,
        operation="Redeem",
        command=command,
        result_type=RedeemResult,
        owner=owner,
        effect=lambda connection, now_us: _redeem(context, connection, command, spec, code, now_us),
    )


def _redeem(
    context: EngineContext,
    connection: Connection,
    command: RedeemCommand,
    spec: CouponCodeRedemptionSpec,
    code: str,
    now_us: int,
) -> RedeemResult:
    row = read_coupon_by_code(connection, code, lock=True)
    if row is None:
        raise _not_found(code)
    user_id = int(row.user_id)
    require_not_frozen(connection, user_id)
    refuse_unusable(row, now_us, "coupon_code.code")
    template = read_template(connection, row.template_id)
    if template is None:
        raise InvariantViolation(f"coupon {row.coupon_id}'s template {row.template_id} is missing")
    outcome = apply_coupons(
        cart_of(spec.order_amount, spec.items, command.merchant_id), [(row.coupon_id, template.rules)]
    )
    if not isinstance(outcome, Applied):
        coupon_id, rejection = outcome
        raise rejection.error(coupon_id)
    discount = outcome.total
    transaction_id = ids.new_transaction_id(context.router.virtual_shard_of_user(user_id), now_us)
    breakdown = Breakdown(discount=discount, coupons=(InstrumentAmount(row.coupon_id, discount),))
    # Nothing is paid (authorized and captured 0): the coupon's discount is the value moved.
    record_till_redemption(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        merchant_id=command.merchant_id,
        kind=KIND,
        leg=LegMove(LegKind.COUPON, row.coupon_id, discount, discount),
        breakdown=breakdown,
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=f"coupon {row.coupon_id} at {command.merchant_id} on an order of {spec.order_amount}",
    )
    fresh = read_coupon_by_code(connection, code)
    if fresh is None:
        raise InvariantViolation(f"coupon {row.coupon_id} vanished")
    return RedeemResult(transaction_id=transaction_id, discount=discount, coupon=coupon_view(fresh, now_us))
