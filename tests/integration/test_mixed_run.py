"""A mixed concurrent run over hundreds of users on two PostgreSQL shards ends with every
CONTRACT §8 invariant holding; a planted bad row makes the audit fail."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from engine.domain.commands import (
    ChargeCommand,
    CoinsSpec,
    IssueCommand,
    PointsSpec,
    RefundCommand,
    TopUpSpec,
)
from engine.domain.errors import CofferError
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.refund import refund

USERS = list(range(1, 241))
OPERATIONS = 1500
#: Reasons a correct engine gives under this load; anything else fails the test.
EXPECTED_REASONS = {
    "INSUFFICIENT_FUNDS",
    "REFUND_EXCEEDS_CAPTURED",
    "ORDER_ALREADY_CHARGED",
    "IDEMPOTENCY_KEY_IN_USE",
    "POINTS_LIMIT_EXCEEDED",
    "CHARGE_NOT_FOUND",
}


def seed(context: EngineContext) -> None:
    def one(user: int) -> None:
        issue(
            context,
            IssueCommand(f"seed-cash-{user}", user, TopUpSpec(5_000, Asset.CASH, "alipay", f"s{user}")),
        )
        issue(context, IssueCommand(f"seed-points-{user}", user, PointsSpec(800, 30, "seed")))
        issue(context, IssueCommand(f"seed-coins-{user}", user, CoinsSpec(300, "seed")))

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, USERS))


def run_mix(context: EngineContext) -> Counter[str]:
    randomness = random.Random(20261122)
    charges: list[str] = []
    plans = []
    for index in range(OPERATIONS):
        user = randomness.choice(USERS)
        kind = randomness.choices(
            ["charge", "refund", "top_up", "duplicate", "same_order"], weights=[45, 20, 15, 10, 10]
        )[0]
        plans.append((index, kind, user, randomness.randint(50, 900), randomness.randint(0, 3)))

    def execute(plan: tuple[int, str, int, int, int]) -> str:
        index, kind, user, amount, variant = plan
        try:
            if kind == "charge":
                points = [0, 20, 40, 0][variant]
                coins = [0, 0, 10, 30][variant]
                result = charge(
                    context,
                    ChargeCommand(
                        f"c-{index}", user, f"o-{index}", "m-1", "", amount, points=points, coins=coins
                    ),
                )
                charges.append(result.charge_id)
            elif kind == "refund":
                if not charges:
                    return "skipped"
                target = charges[index % len(charges)]
                refund(context, RefundCommand(f"r-{index}", target, max(1, amount // 4)))
            elif kind == "top_up":
                issue(
                    context,
                    IssueCommand(f"t-{index}", user, TopUpSpec(amount, Asset.CASH, "wechat", f"w-{index}")),
                )
            elif kind == "duplicate":
                command = ChargeCommand(f"dup-{user}", user, f"dup-order-{user}", "m-2", "", 100)
                charge(context, command)
            else:
                command = ChargeCommand(f"so-{index}", user, f"shared-{user}", "m-3", "", 50)
                charge(context, command)
            return "ok"
        except CofferError as error:
            return error.reason.label

    with ThreadPoolExecutor(max_workers=32) as pool:
        return Counter(pool.map(execute, plans))


def test_mixed_concurrent_run_keeps_every_invariant(pg_context: EngineContext) -> None:
    seed(pg_context)
    outcomes = run_mix(pg_context)
    assert outcomes["ok"] > OPERATIONS // 2, outcomes
    assert set(outcomes) - {"ok", "skipped"} <= EXPECTED_REASONS, outcomes
    report = audit(pg_context)
    assert report.ok, report
    assert all(shard.transactions_checked > 500 for shard in report.shards), report

    # A planted unbalanced ledger row is caught.
    shard = pg_context.router.for_user(USERS[0])
    with shard.engine.begin() as connection:
        transaction_id = connection.execute(
            text("SELECT transaction_id FROM ledger_transactions WHERE user_id = :u LIMIT 1"),
            {"u": USERS[0]},
        ).scalar_one()
        connection.execute(
            text(
                "INSERT INTO ledger_entries "
                "(transaction_id, account, user_id, asset, bucket, instrument, amount) "
                "VALUES (:t, 'user', :u, 'CASH', 'available', '', 1)"
            ),
            {"t": transaction_id, "u": USERS[0]},
        )
    broken = audit(pg_context)
    assert not broken.ok
    invariants = {violation.invariant for report in broken.shards for violation in report.violations}
    assert "1.transaction_sums_to_zero" in invariants
    assert "1.balance_equals_ledger" in invariants


def test_audit_catches_a_balance_changed_behind_the_ledger(pg_context: EngineContext) -> None:
    issue(pg_context, IssueCommand("t", 9, TopUpSpec(100, Asset.CASH, "alipay", "x")))
    assert audit(pg_context).ok
    with pg_context.router.for_user(9).engine.begin() as connection:
        connection.execute(text("UPDATE balances SET available = available + 1 WHERE user_id = 9"))
    report = audit(pg_context)
    assert not report.ok
    details = [violation.detail for shard in report.shards for violation in shard.violations]
    assert any("user 9 CASH" in detail for detail in details), details
