"""Admin wallet operations: freeze / unfreeze and signed adjustments; the balance ceiling."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.domain.commands import (
    AdjustCommand,
    ChargeCommand,
    FreezeAccountCommand,
    IssueCommand,
    PointsSpec,
    TopUpSpec,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.money import MAX_BALANCE_FEN, MAX_REQUEST_AMOUNT_FEN, Asset
from engine.service.account_admin import adjust, set_account_frozen
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_wallet
from tests.support.wallets import available

USER = 64


def test_frozen_wallet_refuses_charges_but_takes_credits(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("t1", USER, TopUpSpec(1000, Asset.CASH, "alipay", "a1")))
    state = set_account_frozen(engine_context, FreezeAccountCommand("f1", USER, True, "risk review", "ops-1"))
    assert state.frozen and state.reason == "risk review"
    with pytest.raises(CofferError) as refused:
        charge(engine_context, ChargeCommand("c1", USER, "o1", "m", "", 100))
    assert refused.value.reason is Reason.ACCOUNT_FROZEN
    issue(engine_context, IssueCommand("t2", USER, TopUpSpec(500, Asset.CASH, "alipay", "a2")))
    assert get_wallet(engine_context, USER).frozen
    assert set_account_frozen(
        engine_context, FreezeAccountCommand("f1", USER, True, "risk review", "ops-1")
    ).replayed
    set_account_frozen(engine_context, FreezeAccountCommand("u1", USER, False, "cleared", "ops-1"))
    assert available(charge(engine_context, ChargeCommand("c1", USER, "o1", "m", "", 100)).wallet) == 1400
    assert audit(engine_context).ok


def test_adjust_credits_and_debits_without_overdraft(engine_context: EngineContext) -> None:
    credited = adjust(engine_context, AdjustCommand("a1", USER, Asset.CASH, 250, "goodwill", "ops-7"))
    assert credited.transaction.type == "ADJUST"
    assert sorted(entry.amount for entry in credited.transaction.entries) == [-250, 250]
    assert available(credited.wallet) == 250
    debited = adjust(engine_context, AdjustCommand("a2", USER, Asset.CASH, -200, "correction", "ops-7"))
    assert available(debited.wallet) == 50
    with pytest.raises(CofferError) as refused:
        adjust(engine_context, AdjustCommand("a3", USER, Asset.CASH, -51, "correction", "ops-7"))
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    points = adjust(engine_context, AdjustCommand("a4", USER, Asset.POINTS, 300, "migration", "ops-7"))
    assert available(points.wallet, "POINTS") == 300
    assert len(get_wallet(engine_context, USER).points_lots) == 1
    adjust(engine_context, AdjustCommand("a5", USER, Asset.POINTS, -120, "correction", "ops-7"))
    assert get_wallet(engine_context, USER).points_lots[0].points == 180
    with pytest.raises(CofferError) as missing_operator:
        adjust(engine_context, AdjustCommand("a6", USER, Asset.CASH, 1, "x", ""))
    assert missing_operator.value.reason is Reason.INVALID_ARGUMENT
    assert audit(engine_context).ok


def test_no_balance_passes_two_to_the_sixty_two(engine_context: EngineContext) -> None:
    issue(
        engine_context, IssueCommand("t1", USER, TopUpSpec(MAX_REQUEST_AMOUNT_FEN, Asset.CASH, "bank", "b1"))
    )
    # Reaching the ceiling by requests would take 461,169 top-ups; place the balance near it
    # (balance and ledger together, so the books still agree) and try to pass it.
    near = MAX_BALANCE_FEN - 10
    with engine_context.router.for_user(USER).engine.begin() as connection:
        connection.execute(
            text("UPDATE balances SET available = :v WHERE user_id = :u"), {"v": near, "u": USER}
        )
        connection.execute(
            text("UPDATE ledger_entries SET amount = :v WHERE user_id = :u AND account = 'user'"),
            {"v": near, "u": USER},
        )
        connection.execute(
            text("UPDATE ledger_entries SET amount = :v WHERE account = 'topup_clearing:bank'"), {"v": -near}
        )
    issue(engine_context, IssueCommand("t2", USER, TopUpSpec(10, Asset.CASH, "bank", "b2")))
    with pytest.raises(CofferError) as refused:
        issue(engine_context, IssueCommand("t3", USER, TopUpSpec(1, Asset.CASH, "bank", "b3")))
    assert refused.value.reason is Reason.AMOUNT_LIMIT_EXCEEDED
    assert available(get_wallet(engine_context, USER)) == MAX_BALANCE_FEN
    issue(engine_context, IssueCommand("p1", USER, PointsSpec(5, 0, "still fine for other assets")))
    assert audit(engine_context).ok


def test_points_adjustment_pays_a_points_debt_first(engine_context: EngineContext) -> None:
    from dataclasses import replace

    from engine.domain.commands import RefundCommand
    from engine.service.refund import refund

    earning = EngineContext(
        engine_context.router, replace(engine_context.settings, points_earn_bps=1_000), engine_context.clock
    )
    issue(earning, IssueCommand("t1", USER, TopUpSpec(10_000, Asset.CASH, "alipay", "a1")))
    order = charge(earning, ChargeCommand("c1", USER, "o1", "m", "", 5_000))  # earns 500 points
    # Spends them; the 500 paid in cash earns 50 more.
    charge(earning, ChargeCommand("c2", USER, "o2", "m", "", 1_000, points=500))
    refund(earning, RefundCommand("r1", order.charge_id, 5_000))  # claws back 500: 50 taken, 450 owed
    assert get_wallet(earning, USER).points_debt == 450
    adjusted = adjust(earning, AdjustCommand("a1", USER, Asset.POINTS, 800, "goodwill", "ops-7"))
    assert adjusted.wallet.points_debt == 0
    assert available(adjusted.wallet, "POINTS") == 350
    assert audit(earning).ok
