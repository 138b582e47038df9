"""The simplest money path on both databases: top up, charge, refund, audit."""

from __future__ import annotations

from engine.domain.commands import ChargeCommand, IssueCommand, RefundCommand, TopUpSpec
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.issue import issue
from engine.service.refund import refund


def cash(wallet: object) -> int:
    return next(b.available for b in wallet.balances if b.asset == "CASH")  # type: ignore[attr-defined]


def test_top_up_charge_refund_round_trip(engine_context) -> None:  # type: ignore[no-untyped-def]
    issue(engine_context, IssueCommand("top-1", 42, TopUpSpec(1000, Asset.CASH, "alipay", "a-1")))
    charged = charge(engine_context, ChargeCommand("ch-1", 42, "order-1", "m-1", "", 300))
    assert charged.status == "CAPTURED"
    assert cash(charged.wallet) == 700
    refunded = refund(engine_context, RefundCommand("rf-1", charged.charge_id, 120))
    assert cash(refunded.wallet) == 820
    assert refunded.charge.status == "PARTIALLY_REFUNDED"
    report = audit(engine_context)
    assert report.ok, report
