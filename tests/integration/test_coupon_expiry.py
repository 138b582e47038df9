"""Coupons past their validity are EXPIRED at that instant; the expiry job records it once."""

from __future__ import annotations

from sqlalchemy import select

from engine.domain.commands import ChargeCommand
from engine.domain.coupons.messages import FreezeCouponCommand
from engine.domain.coupons.rules import CouponType
from engine.jobs.run import run_expire
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.coupon_admin import set_coupon_frozen
from engine.service.coupon_expiry import expire_coupons
from engine.service.queries import list_transactions
from engine.storage.schema import user_coupons
from tests.support.coupons import claim_one, key, state, template, top_up

USER = 5001


def stored(context, coupon_id: str) -> str:  # type: ignore[no-untyped-def]
    with context.router.for_user(USER).engine.connect() as connection:
        return str(
            connection.execute(
                select(user_coupons.c.state).where(user_coupons.c.coupon_id == coupon_id)
            ).scalar_one()
        )


def test_the_job_records_expiries_once(engine_context) -> None:  # type: ignore[no-untyped-def]
    context = engine_context
    top_up(context, USER, 100_000)
    tid = template(context, CouponType.NO_THRESHOLD, amount_off=500, valid_days_after_claim=1)
    active = claim_one(context, USER, tid)
    frozen = claim_one(context, USER, tid)
    used = claim_one(context, USER, tid)
    held = claim_one(context, USER, tid)
    lasting = claim_one(context, USER, template(context, CouponType.NO_THRESHOLD, amount_off=500))
    set_coupon_frozen(context, FreezeCouponCommand(key("fz"), frozen, True, "risk"))
    charge(context, ChargeCommand(key("ch"), USER, key("o"), "m", "", 1000, coupon_ids=(used,)))
    charge(
        context,
        ChargeCommand(key("ch"), USER, key("o"), "m", "", 1000, coupon_ids=(held,), authorize_only=True),
    )

    context.clock.advance(days=1, seconds=1)
    # Effective at the instant, before any job has run.
    assert state(context, USER, active) == "EXPIRED" and stored(context, active) == "ACTIVATED"
    assert state(context, USER, frozen) == "EXPIRED"
    assert state(context, USER, used) == "USED"
    assert state(context, USER, held) == "LOCKED"
    assert expire_coupons(context, context.now_us(), batch_size=1) == 2
    assert stored(context, active) == "EXPIRED" and stored(context, frozen) == "EXPIRED"
    assert stored(context, lasting) == "ACTIVATED"
    assert expire_coupons(context, context.now_us(), batch_size=10) == 0
    memos = [t.memo for t in list_transactions(context, USER, 50, "").transactions if t.type == "EXPIRE"]
    assert sorted(memos) == sorted(
        [f"coupon {active} expired (ACTIVATED)", f"coupon {frozen} expired (FROZEN)"]
    )

    # The hold expires a week later: the job releases the coupon, then records its expiry.
    context.clock.advance(days=8)
    report = run_expire(context)
    assert report.changed("holds") == 1
    assert report.changed("coupons") == 1
    assert stored(context, held) == "EXPIRED"
    assert run_expire(context).changed("coupons") == 0
    assert audit(context).ok
