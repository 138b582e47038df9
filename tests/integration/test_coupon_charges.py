"""Coupons inside Charge: discounts, refusals, holds, item refunds (both databases), and the
concurrency guarantee that a coupon held or used by one charge is never taken by another
(issue 4 must-show 3, real PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from engine.domain.commands import (
    CaptureCommand,
    ChargeCommand,
    LineItem,
    RefundCommand,
    RefundItem,
    VoidCommand,
)
from engine.domain.coupons.messages import FreezeCouponCommand
from engine.domain.coupons.rules import CouponScope, CouponType
from engine.domain.errors import CofferError, Reason
from engine.domain.results import ChargeResult
from engine.service.audit import audit
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.coupon_admin import set_coupon_frozen
from engine.service.queries import list_transactions
from engine.service.refund import refund
from engine.service.void import void
from engine.storage.schema import charge_items, coupon_events
from tests.support.coupons import DAY_US, cash, claim_one, key, state, template, top_up

USER = 1001
OTHER = 1002


def pay(context, user_id: int, amount: int, coupon_ids: tuple[str, ...] = (), **extra) -> ChargeResult:  # type: ignore[no-untyped-def]
    return charge(
        context,
        ChargeCommand(key("ch"), user_id, key("order"), "m-1", "", amount, coupon_ids=coupon_ids, **extra),
    )


def refused(reason: Reason, work) -> CofferError:  # type: ignore[no-untyped-def]
    with pytest.raises(CofferError) as caught:
        work()
    assert caught.value.reason is reason, caught.value
    return caught.value


def test_an_immediate_charge_uses_the_coupon_and_expenses_the_discount(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.FIXED_OFF, amount_off=2000, min_spend=10000)
    coupon_id = claim_one(context, USER, tid)
    result = pay(context, USER, 10000, (coupon_id,))
    assert result.breakdown.discount == 2000
    assert result.breakdown.cash_amount == 8000
    assert [(item.instrument, item.amount) for item in result.breakdown.coupons] == [(coupon_id, 2000)]
    assert state(context, USER, coupon_id) == "USED"
    assert cash(context, USER) == 92_000
    history = list_transactions(context, USER, 10, "")
    kinds = [transaction.type for transaction in history.transactions]
    assert kinds[:2] == ["CHARGE", "COUPON_CLAIM"]
    entries = sorted((entry.account, entry.amount) for entry in history.transactions[0].entries)
    # The merchant gets the whole 100: 80 from the user, 20 from the platform's coupon expense.
    assert entries == [
        ("coupon_expense", -2000),
        ("merchant_payable:m-1", 2000),
        ("merchant_payable:m-1", 8000),
        ("user", -8000),
    ]
    refused(Reason.COUPON_ALREADY_USED, lambda: pay(context, USER, 10000, (coupon_id,)))
    assert audit(context).ok


def test_refusals_name_the_reason(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    man = template(context, CouponType.FIXED_OFF, amount_off=2000, min_spend=10000)
    veg = template(
        context,
        CouponType.NO_THRESHOLD,
        amount_off=500,
        scope=CouponScope(categories=("veg",)),
        stackable=True,
    )
    lonely = template(context, CouponType.NO_THRESHOLD, amount_off=300)
    short = template(context, CouponType.NO_THRESHOLD, amount_off=300, valid_days_after_claim=1)
    man_coupon = claim_one(context, USER, man)
    veg_coupon = claim_one(context, USER, veg)
    lonely_coupon = claim_one(context, USER, lonely)
    short_coupon = claim_one(context, USER, short)
    others_coupon = claim_one(context, OTHER, man)

    refused(Reason.MIN_SPEND_NOT_MET, lambda: pay(context, USER, 9999, (man_coupon,)))
    beer = (LineItem("b1", "beer", 3000, 1),)
    refused(Reason.COUPON_NOT_APPLICABLE, lambda: pay(context, USER, 3000, (veg_coupon,), items=beer))
    refused(Reason.COUPONS_NOT_STACKABLE, lambda: pay(context, USER, 20000, (veg_coupon, lonely_coupon)))
    refused(Reason.COUPON_NOT_FOUND, lambda: pay(context, USER, 20000, (others_coupon,)))
    refused(Reason.COUPON_NOT_FOUND, lambda: pay(context, USER, 20000, ("cp_0000000000000000000000",)))
    set_coupon_frozen(context, FreezeCouponCommand(key("fz"), lonely_coupon, True, "risk"))
    refused(Reason.COUPON_FROZEN, lambda: pay(context, USER, 20000, (lonely_coupon,)))
    context.clock.advance(days=2)
    refused(Reason.COUPON_EXPIRED, lambda: pay(context, USER, 20000, (short_coupon,)))
    assert state(context, USER, short_coupon) == "EXPIRED"
    # Nothing was taken by any refusal.
    assert cash(context, USER) == 100_000
    assert {state(context, USER, c) for c in (man_coupon, veg_coupon)} == {"ACTIVATED"}
    assert audit(context).ok


def test_hold_capture_and_void(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.PERCENT_OFF, discount_bps=2000, max_discount=1500, stackable=True)
    first = claim_one(context, USER, tid)
    second = claim_one(context, USER, tid)

    held = pay(context, USER, 10000, (first,), authorize_only=True)
    assert held.status == "AUTHORIZED"
    assert held.breakdown.discount == 1500
    assert state(context, USER, first) == "LOCKED"
    # A LOCKED coupon cannot pay for another order.
    refused(Reason.COUPON_ALREADY_USED, lambda: pay(context, USER, 10000, (first,)))
    captured = capture(context, CaptureCommand(key("cap"), held.charge_id, 0))
    assert captured.charge.status == "CAPTURED"
    assert state(context, USER, first) == "USED"

    held_again = pay(context, USER, 10000, (second,), authorize_only=True)
    assert state(context, USER, second) == "LOCKED"
    voided = void(context, VoidCommand(key("void"), held_again.charge_id))
    assert voided.charge.status == "VOIDED"
    assert state(context, USER, second) == "ACTIVATED"
    # Released, it pays again.
    assert pay(context, USER, 10000, (second,)).breakdown.discount == 1500
    assert cash(context, USER) == 100_000 - 8500 - 8500
    assert audit(context).ok


def test_item_refunds_give_back_each_lines_paid_share(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    veg = template(
        context,
        CouponType.FIXED_OFF,
        amount_off=2000,
        min_spend=10000,
        scope=CouponScope(categories=("veg",)),
    )
    coupon_id = claim_one(context, USER, veg)
    items = (
        LineItem("carrot", "veg", 3333, 1),
        LineItem("cabbage", "veg", 6667, 1),
        LineItem("beer", "drinks", 5000, 1),
    )
    result = pay(context, USER, 15000, (coupon_id,), items=items)
    assert result.breakdown.discount == 2000
    shard = context.router.for_user(USER)
    with shard.engine.connect() as connection:
        shares = dict(
            connection.execute(
                select(charge_items.c.sku, charge_items.c.discount_share).where(
                    charge_items.c.charge_id == result.charge_id
                )
            ).all()
        )
    # The discount lies on the in-scope lines only, in proportion, the remainder on the largest.
    assert shares == {"carrot": 666, "cabbage": 1334, "beer": 0}
    beer_back = refund(context, RefundCommand(key("rf"), result.charge_id, 0, (RefundItem("beer", 1),)))
    assert beer_back.breakdown.cash_amount == 5000
    carrot_back = refund(context, RefundCommand(key("rf"), result.charge_id, 0, (RefundItem("carrot", 1),)))
    assert carrot_back.breakdown.cash_amount == 3333 - 666
    # A partial refund leaves the coupon USED.
    assert state(context, USER, coupon_id) == "USED"
    last = refund(context, RefundCommand(key("rf"), result.charge_id, 0, (RefundItem("cabbage", 1),)))
    assert last.breakdown.cash_amount == 6667 - 1334
    assert last.charge.status == "REFUNDED"
    assert state(context, USER, coupon_id) == "ACTIVATED"
    assert cash(context, USER) == 100_000
    assert audit(context).ok


def test_a_locked_coupon_is_never_taken_by_a_concurrent_charge(pg_context) -> None:  # type: ignore[no-untyped-def]
    """Must-show 3 (concurrency): many charges race for one coupon, then for a LOCKED one."""
    context = pg_context
    top_up(context, USER, 1_000_000)
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=1000, total_stock=10)
    coupon_id = claim_one(context, USER, tid)
    racers = 16
    barrier = threading.Barrier(racers)

    def race(index: int) -> ChargeResult | CofferError:
        barrier.wait()
        try:
            return pay(context, USER, 5000, (coupon_id,), authorize_only=index % 2 == 0)
        except CofferError as error:
            return error

    with ThreadPoolExecutor(max_workers=racers) as pool:
        results = list(pool.map(race, range(racers)))
    winners = [result for result in results if isinstance(result, ChargeResult)]
    losers = [result for result in results if isinstance(result, CofferError)]
    assert len(winners) == 1
    assert {error.reason for error in losers} == {Reason.COUPON_ALREADY_USED}
    winner = winners[0]
    expected = "LOCKED" if winner.status == "AUTHORIZED" else "USED"
    assert state(context, USER, coupon_id) == expected

    if winner.status == "CAPTURED":
        # Make a LOCKED coupon for the second race.
        coupon_id = claim_one(context, USER, tid)
        winner = pay(context, USER, 5000, (coupon_id,), authorize_only=True)
    assert state(context, USER, coupon_id) == "LOCKED"
    barrier = threading.Barrier(racers + 1)

    def second_charge(_index: int) -> ChargeResult | CofferError:
        barrier.wait()
        try:
            return pay(context, USER, 5000, (coupon_id,))
        except CofferError as error:
            return error

    def release() -> str:
        barrier.wait()
        return void(context, VoidCommand(key("void"), winner.charge_id)).charge.status

    with ThreadPoolExecutor(max_workers=racers + 1) as pool:
        voided = pool.submit(release)
        charges = list(pool.map(second_charge, range(racers)))
    assert voided.result() == "VOIDED"
    taken = [result for result in charges if isinstance(result, ChargeResult)]
    # While LOCKED nobody may take it; once the void releases it, at most one charge can.
    assert len(taken) <= 1
    assert all(
        isinstance(result, ChargeResult) or result.reason is Reason.COUPON_ALREADY_USED for result in charges
    )
    final = state(context, USER, coupon_id)
    assert final == ("USED" if taken else "ACTIVATED")
    with context.router.for_user(USER).engine.connect() as connection:
        events = (
            connection.execute(
                select(coupon_events.c.event)
                .where(coupon_events.c.coupon_id == coupon_id)
                .order_by(coupon_events.c.event_id)
            )
            .scalars()
            .all()
        )
    assert events[:3] == ["CLAIM", "AUTHORIZE", "RELEASE"]
    assert audit(context).ok


def test_validity_is_judged_at_the_instant(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    now = context.now_us()
    tid = template(
        context,
        CouponType.NO_THRESHOLD,
        amount_off=100,
        valid_days_after_claim=0,
        valid_until_us=now + DAY_US,
    )
    coupon_id = claim_one(context, USER, tid)
    context.clock.advance(days=1)
    assert state(context, USER, coupon_id) == "EXPIRED"
    refused(Reason.COUPON_EXPIRED, lambda: pay(context, USER, 1000, (coupon_id,)))
    assert audit(context).ok


def test_an_authorization_its_coupons_pay_entirely(engine_context) -> None:  # type: ignore[no-untyped-def]
    """Nothing is paid, so the capture captures 0 — and still uses the coupon; the refund of the
    whole order (amount 0) gives it back."""
    context = engine_context
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=5000)
    coupon_id = claim_one(context, USER, tid)
    held = pay(context, USER, 3000, (coupon_id,), authorize_only=True)
    assert held.breakdown.discount == 3000 and held.breakdown.cash_amount == 0
    captured = capture(context, CaptureCommand(key("cap"), held.charge_id, 0))
    assert captured.charge.status == "CAPTURED"
    assert state(context, USER, coupon_id) == "USED"
    back = refund(context, RefundCommand(key("rf"), held.charge_id, 0))
    assert back.charge.status == "REFUNDED"
    assert state(context, USER, coupon_id) == "ACTIVATED"
    assert audit(context).ok
