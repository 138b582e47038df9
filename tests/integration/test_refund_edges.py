"""Refund edges found in review: a SKU named twice, and points returned to a lot the expiry job
already closed (its clock ahead of the request's)."""

from __future__ import annotations

import pytest

from engine.domain.commands import (
    ChargeCommand,
    IssueCommand,
    LineItem,
    PointsSpec,
    RefundCommand,
    RefundItem,
    TopUpSpec,
    VoidCommand,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.jobs.registry import EXPIRE_TASKS
from engine.jobs.run import run_expire
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_charge, get_wallet
from engine.service.refund import refund
from engine.service.void import void
from tests.support.wallets import available, held

USER = 41
DAY_US = 86_400 * 1_000_000


def test_a_sku_named_twice_in_a_refund_is_refused(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("t", USER, TopUpSpec(1_000, Asset.CASH, "c", "t")))
    items = (LineItem("A", "veg", 100, 1), LineItem("B", "veg", 100, 1))
    paid = charge(engine_context, ChargeCommand("c", USER, "o", "m", "", 200, items=items))
    with pytest.raises(CofferError) as refused:
        refund(
            engine_context,
            RefundCommand("r", paid.charge_id, 0, items=(RefundItem("A", 1), RefundItem("A", 1))),
        )
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert refused.value.metadata["field"] == "items[1].sku"
    assert get_charge(engine_context, paid.charge_id).refunded_amount == 0
    refunded = refund(engine_context, RefundCommand("r2", paid.charge_id, 0, items=(RefundItem("A", 1),)))
    assert refunded.charge.refunded_amount == 100
    with pytest.raises(CofferError) as again:
        refund(engine_context, RefundCommand("r3", paid.charge_id, 0, items=(RefundItem("A", 1),)))
    assert again.value.reason is Reason.REFUND_EXCEEDS_CAPTURED
    assert audit(engine_context).ok


def test_a_sku_on_two_charge_lines_is_refused(engine_context: EngineContext) -> None:
    items = (LineItem("A", "veg", 100, 1), LineItem("A", "veg", 100, 1))
    with pytest.raises(CofferError) as refused:
        charge(engine_context, ChargeCommand("c", USER, "o", "m", "", 200, items=items))
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert refused.value.metadata["field"] == "items[1].sku"


def _spend_from_a_lot_the_job_then_closes(context: EngineContext, *, hold: bool) -> str:

    issue(context, IssueCommand("cash", USER, TopUpSpec(1_000, Asset.CASH, "c", "cash")))
    issue(context, IssueCommand("lot", USER, PointsSpec(500, 10, "promo")))
    paid = charge(context, ChargeCommand("c", USER, "o", "m", "", 400, points=100, authorize_only=hold))
    # The job's clock runs 11 days ahead of the engine's: it closes the lot (400 left) now. Only
    # the lots task runs, so a hold stays for the request to release.
    lots_only = [task for task in EXPIRE_TASKS if task.name == "points_lots"]
    run_expire(context, context.now_us() + 11 * DAY_US, tasks=lots_only)
    assert available(get_wallet(context, USER), "POINTS") == 0
    return paid.charge_id


def test_points_refunded_to_a_lot_the_job_closed_expire_again(engine_context: EngineContext) -> None:
    charge_id = _spend_from_a_lot_the_job_then_closes(engine_context, hold=False)
    refund(engine_context, RefundCommand("r", charge_id, 400))
    wallet = get_wallet(engine_context, USER)
    assert available(wallet, "POINTS") == 0 and wallet.points_lots == ()
    report = audit(engine_context)
    assert report.ok, report


def test_points_released_to_a_lot_the_job_closed_expire_again(engine_context: EngineContext) -> None:
    charge_id = _spend_from_a_lot_the_job_then_closes(engine_context, hold=True)
    void(engine_context, VoidCommand("v", charge_id))
    wallet = get_wallet(engine_context, USER)
    assert (available(wallet, "POINTS"), held(wallet, "POINTS")) == (0, 0)
    report = audit(engine_context)
    assert report.ok, report
