"""No overdraft under real concurrency, and refunds never pass what was captured."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from engine.domain.commands import ChargeCommand, IssueCommand, RefundCommand, TopUpSpec
from engine.domain.errors import CofferError
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_charge, get_wallet
from engine.service.refund import refund
from tests.support.wallets import available

USER = 77


def outcome_of(call) -> str:  # type: ignore[no-untyped-def]
    try:
        call()
        return "ok"
    except CofferError as error:
        return error.reason.label


def test_hundred_concurrent_charges_of_thirty_on_a_thousand(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("top", USER, TopUpSpec(1000, Asset.CASH, "alipay", "x")))

    def one(index: int) -> str:
        return outcome_of(
            lambda: charge(engine_context, ChargeCommand(f"c-{index}", USER, f"o-{index}", "m", "", 30))
        )

    with ThreadPoolExecutor(max_workers=100) as pool:
        outcomes = list(pool.map(one, range(100)))
    assert outcomes.count("ok") == 33, outcomes
    assert outcomes.count("INSUFFICIENT_FUNDS") == 67, outcomes
    assert available(get_wallet(engine_context, USER)) == 10
    assert audit(engine_context).ok


def test_twenty_concurrent_refunds_of_hundred_on_a_thousand(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("top", USER, TopUpSpec(1000, Asset.CASH, "alipay", "x")))
    charged = charge(engine_context, ChargeCommand("c", USER, "o", "m", "", 1000))

    def one(index: int) -> str:
        return outcome_of(
            lambda: refund(engine_context, RefundCommand(f"r-{index}", charged.charge_id, 100))
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count("ok") == 10, outcomes
    assert set(outcomes) == {"ok", "REFUND_EXCEEDS_CAPTURED"}, outcomes
    view = get_charge(engine_context, charged.charge_id)
    assert view.refunded_amount == 1000 and view.status == "REFUNDED"
    assert len(view.refunds) == 10
    assert available(get_wallet(engine_context, USER)) == 1000
    assert audit(engine_context).ok
