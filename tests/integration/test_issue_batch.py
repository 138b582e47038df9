"""IssueBatch on PostgreSQL and SQLite: each item gets exactly its own outcome, in order, with
the single Issue's rules (docs/bulk.md)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select, text

from engine.domain.commands import (
    ChargeCommand,
    CoinsSpec,
    CouponClaimSpec,
    FreezeAccountCommand,
    IssueCommand,
    PointsSpec,
    RefundCommand,
    TopUpSpec,
)
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.money import MAX_BALANCE_FEN, Asset
from engine.service.account_admin import set_account_frozen
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.issue_batch import MAX_BATCH_ITEMS, BatchItem, ItemOutcome, issue_batch
from engine.service.queries import get_wallet
from engine.service.refund import refund
from engine.storage.schema import audit_events, ledger_entries
from tests.support.coupons import template
from tests.support.instruments import assert_audit_ok, balance, count_transactions, lots

EVEN_USER = 7_000  # shard 0 (user_id % 128 % 2)
ODD_USER = 7_001  # shard 1
FROZEN_USER = 7_002


def points(
    key: str, user_id: int, amount: int = 100, *, ttl_days: int = 0, reason: str = "campaign"
) -> IssueCommand:
    return IssueCommand(key, user_id, PointsSpec(amount, ttl_days, reason))


def entry_count(context: EngineContext) -> int:
    total = 0
    for shard in context.router.shards:
        with shard.engine.connect() as connection:
            total += int(connection.execute(select(func.count()).select_from(ledger_entries)).scalar_one())
    return total


def reason_of(outcome: ItemOutcome) -> Reason | None:
    return outcome.error.reason if outcome.error else None


def test_a_mixed_batch_answers_each_item_on_its_own(engine_context: EngineContext) -> None:
    context = engine_context
    issue(context, points("earlier", EVEN_USER, 50))
    issue(context, points("reused", ODD_USER, 10))
    set_account_frozen(context, FreezeAccountCommand("freeze-1", FROZEN_USER, True, "risk"))
    coupon_template = template(context, amount_off=500, min_spend=500)
    items: list[BatchItem] = [
        points("new-1", EVEN_USER, 100),  # 0: a new grant on shard 0
        points("earlier", EVEN_USER, 50),  # 1: a replay of a single Issue
        points("reused", ODD_USER, 999),  # 2: the key with another payload
        IssueCommand("frozen-coupon", FROZEN_USER, CouponClaimSpec(coupon_template)),  # 3: refused
        points("frozen-points", FROZEN_USER, 30),  # 4: a frozen wallet still receives credits
        points("bad", ODD_USER, 0),  # 5: invalid
        invalid_argument("kind", "no kind"),  # 6: refused by its conversion
        points("new-2", EVEN_USER, 7, ttl_days=30),  # 7: the same user again, another key
        IssueCommand("coins-1", ODD_USER, CoinsSpec(40, "campaign")),  # 8: coins on shard 1
        points("new-1", EVEN_USER, 100),  # 9: the same key again in this batch: a replay of 0
        points("new-2", EVEN_USER, 8, ttl_days=30),  # 10: the same key, another payload: reused
        IssueCommand("topup-1", ODD_USER, TopUpSpec(300, Asset.CASH, "alipay", "tx-1")),  # 11: one by one
    ]
    outcomes = issue_batch(context, items)
    assert [outcome.index for outcome in outcomes] == list(range(len(items)))
    assert [reason_of(outcome) for outcome in outcomes] == [
        None,
        None,
        Reason.IDEMPOTENCY_KEY_REUSED,
        Reason.ACCOUNT_FROZEN,
        None,
        Reason.INVALID_ARGUMENT,
        Reason.INVALID_ARGUMENT,
        None,
        None,
        None,
        Reason.IDEMPOTENCY_KEY_REUSED,
        None,
    ]
    assert [outcome.replayed for outcome in outcomes] == [
        False, True, False, False, False, False, False, False, False, True, False, False,
    ]  # fmt: skip
    assert outcomes[9].transaction_id == outcomes[0].transaction_id
    assert outcomes[1].transaction_id == issue(context, points("earlier", EVEN_USER, 50)).transaction_id
    assert outcomes[5].error is not None and outcomes[5].error.metadata["field"] == "points.points"
    assert all(outcome.transaction_id == "" for outcome in outcomes if outcome.error)
    assert balance(context, EVEN_USER, "POINTS") == (157, 0)
    assert balance(context, ODD_USER, "POINTS") == (10, 0)
    assert balance(context, ODD_USER, "COINS") == (40, 0)
    assert balance(context, ODD_USER, "CASH") == (300, 0)
    assert balance(context, FROZEN_USER, "POINTS") == (30, 0)
    assert sorted(lot.granted for lot in lots(context, EVEN_USER)) == [7, 50, 100]
    assert count_transactions(context, EVEN_USER, "POINTS_GRANT") == 3
    # A batch item replays through the single Issue too, with its stored answer.
    replayed = issue(context, points("new-1", EVEN_USER, 100))
    assert (replayed.replayed, replayed.transaction_id) == (True, outcomes[0].transaction_id)
    assert replayed.wallet.user_id == EVEN_USER
    with pytest.raises(CofferError) as reused:
        issue(context, points("coins-1", ODD_USER, 40))
    assert reused.value.reason is Reason.IDEMPOTENCY_KEY_REUSED
    assert_audit_ok(context)


def test_replaying_a_batch_changes_nothing(engine_context: EngineContext) -> None:
    items: list[BatchItem] = [points(f"c-{user}", user, 100) for user in range(8_000, 8_050)]
    first = issue_batch(engine_context, items, chunk_items=16)
    entries = entry_count(engine_context)
    again = issue_batch(engine_context, items, chunk_items=7)
    assert all(outcome.error is None and not outcome.replayed for outcome in first)
    assert all(outcome.replayed for outcome in again)
    assert [outcome.transaction_id for outcome in again] == [outcome.transaction_id for outcome in first]
    assert entry_count(engine_context) == entries
    assert all(balance(engine_context, user, "POINTS") == (100, 0) for user in range(8_000, 8_050))
    assert_audit_ok(engine_context)


def test_each_applied_grant_has_one_audit_row_and_a_replay_adds_none(engine_context: EngineContext) -> None:
    items: list[BatchItem] = [points(f"a-{user}", user, 10) for user in range(8_100, 8_140)]
    items.append(IssueCommand("a-coins", 8_100, CoinsSpec(5, "campaign")))
    first = issue_batch(engine_context, items, chunk_items=9)
    again = issue_batch(engine_context, items, chunk_items=4)
    assert all(outcome.error is None for outcome in first + again)
    rows: list[Any] = []
    for shard in engine_context.router.shards:
        with shard.engine.connect() as connection:
            rows += connection.execute(
                select(audit_events).where(audit_events.c.idempotency_key.like("a-%"))
            ).all()
    by_key = {(row.user_id, row.idempotency_key): row for row in rows}
    assert len(rows) == len(by_key) == len(items)
    for item, outcome in zip(items, first, strict=True):
        row = by_key[(item.user_id, item.idempotency_key)]
        assert row.rpc == "Issue" and row.transaction_id == outcome.transaction_id
        assert row.caller == "anonymous"
    assert_audit_ok(engine_context)  # the chains verify, the batch's rows included


def test_a_points_debt_is_paid_first_by_batch_grants(engine_context: EngineContext) -> None:
    user = 7_100
    earning = EngineContext(
        engine_context.router, replace(engine_context.settings, points_earn_bps=1_000), engine_context.clock
    )
    issue(earning, IssueCommand("t1", user, TopUpSpec(10_000, Asset.CASH, "alipay", "a1")))
    order = charge(earning, ChargeCommand("c1", user, "o1", "m", "", 5_000))  # earns 500 points
    charge(earning, ChargeCommand("c2", user, "o2", "m", "", 1_000, points=500))  # earns 50
    refund(earning, RefundCommand("r1", order.charge_id, 5_000))  # claws back 500: 50 taken, 450 owed
    assert get_wallet(earning, user).points_debt == 450
    # Two grants in one chunk, in arrival order: 300 all to the debt, then 100 of 200 to the debt.
    outcomes = issue_batch(earning, [points("g1", user, 300), points("g2", user, 200)])
    assert all(outcome.error is None for outcome in outcomes)
    wallet = get_wallet(earning, user)
    assert (wallet.points_debt, balance(earning, user, "POINTS")) == (0, (50, 0))
    assert sorted(
        (lot.granted, lot.remaining) for lot in lots(earning, user) if lot.granted in (200, 300)
    ) == [
        (200, 50),
        (300, 0),
    ]
    assert_audit_ok(earning)


def test_concurrent_batches_with_overlapping_keys_apply_each_key_once(engine_context: EngineContext) -> None:
    users = range(9_000, 9_200)
    forward: list[BatchItem] = [points(f"camp-{user}", user) for user in users]
    backward: list[BatchItem] = list(reversed(forward))
    barrier = threading.Barrier(2)

    def run(items: list[BatchItem]) -> list[ItemOutcome]:
        barrier.wait()
        return issue_batch(engine_context, items, chunk_items=50)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, [forward, backward]))
    by_key: dict[int, list[ItemOutcome]] = {}
    for items, outcomes in zip([forward, backward], results, strict=True):
        for item, outcome in zip(items, outcomes, strict=True):
            assert isinstance(item, IssueCommand)
            by_key.setdefault(item.user_id, []).append(outcome)
    for outcomes in by_key.values():
        applied = [outcome for outcome in outcomes if outcome.error is None and not outcome.replayed]
        answered = [outcome for outcome in outcomes if outcome.error is None]
        # Exactly one effect; the other answer is its replay (or "in use", which may be retried).
        assert len(applied) == 1
        assert all(outcome.transaction_id == applied[0].transaction_id for outcome in answered)
        assert all(
            outcome.error.reason is Reason.IDEMPOTENCY_KEY_IN_USE for outcome in outcomes if outcome.error
        )
    assert all(balance(engine_context, user, "POINTS") == (100, 0) for user in users)
    assert_audit_ok(engine_context)


def test_batch_limits_are_refusals_of_the_whole_call(engine_context: EngineContext) -> None:
    with pytest.raises(CofferError) as empty:
        issue_batch(engine_context, [])
    assert empty.value.reason is Reason.INVALID_ARGUMENT
    too_many: list[BatchItem] = [points(f"k{index}", 1 + index) for index in range(MAX_BATCH_ITEMS + 1)]
    with pytest.raises(CofferError) as refused:
        issue_batch(engine_context, too_many)
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert entry_count(engine_context) == 0


def test_a_chunk_that_hits_the_balance_limit_is_rerun_item_by_item(engine_context: EngineContext) -> None:
    rich, other = 7_200, 7_202
    issue(engine_context, IssueCommand("fill", rich, CoinsSpec(10, "fill")))
    # Reaching the ceiling by requests would take 461,169 grants; place the balance near it
    # (balance and ledger together, so the books still agree), as test_account_admin does.
    near = MAX_BALANCE_FEN - 10
    with engine_context.router.for_user(rich).engine.begin() as connection:
        connection.execute(
            text("UPDATE balances SET available = :v WHERE user_id = :u AND asset = 'COINS'"),
            {"v": near, "u": rich},
        )
        connection.execute(
            text("UPDATE ledger_entries SET amount = :v WHERE user_id = :u AND account = 'user'"),
            {"v": near, "u": rich},
        )
        connection.execute(
            text("UPDATE ledger_entries SET amount = :v WHERE account = 'coins_issued'"), {"v": -near}
        )
    before = balance(engine_context, rich, "COINS")[0]
    outcomes = issue_batch(
        engine_context,
        [
            IssueCommand("over", rich, CoinsSpec(11, "too much")),
            IssueCommand("fine", other, CoinsSpec(5, "fine")),
        ],
    )
    assert [reason_of(outcome) for outcome in outcomes] == [Reason.AMOUNT_LIMIT_EXCEEDED, None]
    assert balance(engine_context, rich, "COINS") == (before, 0)
    assert balance(engine_context, other, "COINS") == (5, 0)
    assert_audit_ok(engine_context)
