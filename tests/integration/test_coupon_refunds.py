"""Issue 4 must-show 5: what a refund does to the order's coupons (CONTRACT §3 state table), for
charges and for till redemptions (Redeem(coupon_code) → Refund with its transaction id)."""

from __future__ import annotations

import pytest

from engine.domain.commands import (
    ChargeCommand,
    CouponCodeRedemptionSpec,
    LineItem,
    RedeemCommand,
    RefundCommand,
)
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.domain.errors import CofferError, Reason
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.queries import get_charge, list_transactions
from engine.service.redeem import redeem
from engine.service.refund import refund
from tests.support.coupons import cash, claim, claim_one, key, state, template, top_up

USER = 2001


def pay(context, coupon_id: str, amount: int = 10000):  # type: ignore[no-untyped-def]
    return charge(
        context, ChargeCommand(key("ch"), USER, key("order"), "m-1", "", amount, coupon_ids=(coupon_id,))
    )


def test_full_refund_restores_a_still_valid_coupon(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.FIXED_OFF, amount_off=2000, min_spend=10000)
    coupon_id = claim_one(context, USER, tid)
    paid = pay(context, coupon_id)
    partial = refund(context, RefundCommand(key("rf"), paid.charge_id, 3000))
    assert partial.charge.status == "PARTIALLY_REFUNDED"
    assert state(context, USER, coupon_id) == "USED", "a partial refund leaves the coupon USED"
    full = refund(context, RefundCommand(key("rf"), paid.charge_id, 5000))
    assert full.charge.status == "REFUNDED"
    assert state(context, USER, coupon_id) == "ACTIVATED"
    assert cash(context, USER) == 100_000
    # The merchant gave the discount back to the coupon expense account.
    entries = sorted(
        (e.account, e.amount) for e in list_transactions(context, USER, 1, "").transactions[0].entries
    )
    assert ("coupon_expense", 2000) in entries and ("merchant_payable:m-1", -2000) in entries
    # Restored, it pays again.
    assert pay(context, coupon_id).breakdown.discount == 2000
    assert audit(context).ok


def test_full_refund_after_the_validity_end_expires_the_coupon(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=1000, valid_days_after_claim=1)
    coupon_id = claim_one(context, USER, tid)
    paid = pay(context, coupon_id)
    context.clock.advance(days=2)
    refund(context, RefundCommand(key("rf"), paid.charge_id, 9000))
    assert state(context, USER, coupon_id) == "EXPIRED"
    assert audit(context).ok


def test_a_template_that_does_not_restore_leaves_the_coupon_refunded(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=1000, restore_on_refund=False)
    coupon_id = claim_one(context, USER, tid)
    paid = pay(context, coupon_id)
    refund(context, RefundCommand(key("rf"), paid.charge_id, 9000))
    assert state(context, USER, coupon_id) == "REFUNDED"
    with pytest.raises(CofferError) as refused:
        pay(context, coupon_id)
    assert refused.value.reason is Reason.COUPON_NOT_ACTIVE
    assert audit(context).ok


def test_an_order_paid_entirely_by_coupons_is_refunded_with_amount_zero(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=5000)
    coupon_id = claim_one(context, USER, tid)
    paid = pay(context, coupon_id, amount=3000)
    assert paid.breakdown.discount == 3000 and paid.breakdown.cash_amount == 0
    with pytest.raises(CofferError) as refused:
        refund(context, RefundCommand(key("rf"), paid.charge_id, 1))
    assert refused.value.reason is Reason.REFUND_EXCEEDS_CAPTURED
    done = refund(context, RefundCommand(key("rf"), paid.charge_id, 0))
    assert done.charge.status == "REFUNDED"
    assert state(context, USER, coupon_id) == "ACTIVATED"
    assert audit(context).ok


def test_a_till_redemption_is_refunded_by_its_transaction_id(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    tid = template(
        context,
        CouponType.FIXED_OFF,
        amount_off=2000,
        min_spend=10000,
        scope=CouponScope(merchants=("10086",)),
    )
    issued = claim(context, USER, tid).coupons[0]
    typed = issued.code.lower().replace("-", " ")
    spec = CouponCodeRedemptionSpec(code=typed, order_amount=15000)
    with pytest.raises(CofferError) as elsewhere:
        redeem(context, RedeemCommand(key("rd"), "10087", spec))
    assert elsewhere.value.reason is Reason.COUPON_NOT_APPLICABLE
    with pytest.raises(CofferError) as small:
        redeem(context, RedeemCommand(key("rd"), "10086", CouponCodeRedemptionSpec(issued.code, 9999)))
    assert small.value.reason is Reason.MIN_SPEND_NOT_MET

    redeem_key = key("rd")
    done = redeem(context, RedeemCommand(redeem_key, "10086", spec))
    assert done.discount == 2000
    assert done.coupon is not None and done.coupon.state == "USED"
    again = redeem(context, RedeemCommand(redeem_key, "10086", spec))
    assert again.replayed and again.transaction_id == done.transaction_id
    with pytest.raises(CofferError) as twice:
        redeem(context, RedeemCommand(key("rd"), "10086", spec))
    assert twice.value.reason is Reason.COUPON_ALREADY_USED

    redemption = get_charge(context, done.transaction_id)
    assert redemption.status == "CAPTURED" and redemption.coupon_ids == (issued.coupon_id,)
    assert redemption.breakdown.discount == 2000
    back = refund(context, RefundCommand(key("rf"), done.transaction_id, 0, reason="till void"))
    assert back.charge.status == "REFUNDED"
    assert state(context, USER, issued.coupon_id) == "ACTIVATED"
    with pytest.raises(CofferError) as refunded_twice:
        refund(context, RefundCommand(key("rf"), done.transaction_id, 0))
    assert refunded_twice.value.reason is Reason.REFUND_EXCEEDS_CAPTURED
    # The items at the till decide the scope: beer only is out of a veg coupon's scope.
    veg = template(context, CouponType.NO_THRESHOLD, amount_off=500, scope=CouponScope(categories=("veg",)))
    veg_code = claim(context, USER, veg).coupons[0].code
    beer = CouponCodeRedemptionSpec(veg_code, 3000, (LineItem("beer", "drinks", 3000, 1),))
    with pytest.raises(CofferError) as out_of_scope:
        redeem(context, RedeemCommand(key("rd"), "10086", beer))
    assert out_of_scope.value.reason is Reason.COUPON_NOT_APPLICABLE
    assert audit(context).ok


def test_bad_codes(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=500)
    code = claim(context, USER, tid).coupons[0].code
    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(CofferError) as bad:
        redeem(context, RedeemCommand(key("rd"), "m", CouponCodeRedemptionSpec(mistyped, 1000)))
    assert bad.value.reason is Reason.INVALID_ARGUMENT
    context.clock.advance(days=31)
    with pytest.raises(CofferError) as expired:
        redeem(context, RedeemCommand(key("rd"), "m", CouponCodeRedemptionSpec(code, 1000)))
    assert expired.value.reason is Reason.COUPON_EXPIRED
