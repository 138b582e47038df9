"""Points lots: FIFO spending, expiry by the job, refunds and releases into expired lots,
points exchange with a daily cap, earned points clawed back (and points debt).

Must-show 4 (FIFO lots 1/10/30 days, spend 150, the job expires exactly what is due).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from engine.domain.commands import (
    CaptureCommand,
    ChargeCommand,
    IssueCommand,
    PointsExchangeSpec,
    PointsSpec,
    RedeemCommand,
    RefundCommand,
    VoidCommand,
)
from engine.domain.errors import CofferError, Reason
from engine.jobs.run import run_expire
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_wallet
from engine.service.redeem import redeem
from engine.service.refund import refund
from engine.service.void import void
from tests.support.engines import make_context
from tests.support.instruments import (
    account_total,
    assert_audit_ok,
    balance,
    count_transactions,
    entries_of,
    grant_points,
    key,
    lots,
    refused,
    top_up,
)

USER = 3003
DAY_SECONDS = 86_400


def remaining(context: EngineContext) -> list[int]:
    return [lot.remaining for lot in lots(context, USER)]


def test_fifo_spending_and_expiry_of_exactly_what_is_due(engine_context: EngineContext) -> None:
    """Must-show 4."""
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=30)
    grant_points(engine_context, USER, 100, ttl_days=1)
    grant_points(engine_context, USER, 100, ttl_days=10)
    # Granted out of expiry order on purpose: lots are [30d, 1d, 10d].
    charged = charge(engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=150))
    assert charged.breakdown.points_value == 150
    assert remaining(engine_context) == [100, 0, 50]
    assert balance(engine_context, USER, "POINTS") == (150, 0)

    # Day 2: the 1-day lot is due but empty — nothing to write off.
    engine_context.clock.advance(days=2)  # type: ignore[attr-defined]
    first = run_expire(engine_context)
    assert first.changed("points_lots") == 1
    assert count_transactions(engine_context, USER, "EXPIRE") == 0
    assert balance(engine_context, USER, "POINTS") == (150, 0)

    # Day 11: the 10-day lot's 50 expire; the 30-day lot stays whole.
    engine_context.clock.advance(days=9)  # type: ignore[attr-defined]
    # Before the job runs, an expired lot already stops counting.
    assert balance(engine_context, USER, "POINTS") == (100, 0)
    second = run_expire(engine_context)
    assert second.changed("points_lots") == 1
    assert remaining(engine_context) == [100, 0, 0]
    assert balance(engine_context, USER, "POINTS") == (100, 0)
    assert account_total(engine_context, USER, "points_expired", "POINTS") == 50
    assert count_transactions(engine_context, USER, "EXPIRE") == 1
    assert all(lot.expired_at_us is not None for lot in lots(engine_context, USER)[1:])
    assert_audit_ok(engine_context)

    # Run again: nothing changes.
    transactions = count_transactions(engine_context, USER)
    third = run_expire(engine_context)
    assert all(count.changed == 0 for count in third.tasks.values()), third.summary()
    assert count_transactions(engine_context, USER) == transactions
    # Day 31: the last lot goes too.
    engine_context.clock.advance(days=20)  # type: ignore[attr-defined]
    assert run_expire(engine_context).changed("points_lots") == 1
    assert balance(engine_context, USER, "POINTS") == (0, 0)
    assert account_total(engine_context, USER, "points_expired", "POINTS") == 150
    assert_audit_ok(engine_context)


def test_spending_is_refused_beyond_live_points(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=1)
    grant_points(engine_context, USER, 50, ttl_days=5)
    engine_context.clock.advance(days=2)  # type: ignore[attr-defined]
    # The balance row still counts the expired lot until the job runs; only live lots pay.
    error = refused(
        Reason.INSUFFICIENT_FUNDS,
        charge,
        engine_context,
        ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=100),
    )
    assert error.metadata["asset"] == "POINTS"
    assert (
        charge(engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=50)).status
        == "CAPTURED"
    )
    assert_audit_ok(engine_context)


def test_refund_into_an_expired_lot_expires_again_at_once(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1_000)
    short = grant_points(engine_context, USER, 100, ttl_days=1)
    long = grant_points(engine_context, USER, 100, ttl_days=30)
    charged = charge(engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=150))
    assert remaining(engine_context) == [0, 50]
    engine_context.clock.advance(days=2)  # type: ignore[attr-defined]
    run_expire(engine_context)
    # Refund all 400: cash 250, then 150 points — 50 to the live 30-day lot (latest expiry first),
    # 100 to the expired lot, which expires them again in the same transaction.
    result = refund(engine_context, RefundCommand(key(), charged.charge_id, 400))
    assert result.breakdown.points_used == 150
    assert remaining(engine_context) == [0, 100]
    assert balance(engine_context, USER, "POINTS") == (100, 0)
    refund_tx = [
        row
        for row in entries_of(engine_context, USER, _refund_transaction(engine_context, charged.charge_id))
    ]
    expired = [row for row in refund_tx if row.account == "points_expired"]
    assert [(row.instrument, row.amount) for row in expired] == [(short, 100)]
    assert not any(row.instrument == long and row.account == "points_expired" for row in refund_tx)
    assert_audit_ok(engine_context)


def _refund_transaction(context: EngineContext, charge_id: str) -> str:
    from engine.service.queries import get_charge
    from engine.storage.schema import refunds

    view = get_charge(context, charge_id)
    refund_id = view.refunds[-1].refund_id
    shard = context.router.for_id(charge_id)
    assert shard is not None
    from sqlalchemy import select

    with shard.engine.connect() as connection:
        return str(
            connection.execute(
                select(refunds.c.transaction_id).where(refunds.c.refund_id == refund_id)
            ).scalar_one()
        )


def test_released_hold_returns_points_to_lots_and_expired_ones_expire(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=1)
    grant_points(engine_context, USER, 100, ttl_days=30)
    held = charge(
        engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=150, authorize_only=True)
    )
    assert balance(engine_context, USER, "POINTS") == (50, 150)
    assert [(lot.remaining, lot.held) for lot in lots(engine_context, USER)] == [(0, 100), (50, 50)]
    engine_context.clock.advance(days=2)  # type: ignore[attr-defined]
    # The job expires the 1-day lot's remaining (0); points held by the authorization stay held.
    run_expire(engine_context)
    assert balance(engine_context, USER, "POINTS") == (50, 150)
    void(engine_context, VoidCommand(key(), held.charge_id))
    assert [(lot.remaining, lot.held) for lot in lots(engine_context, USER)] == [(0, 0), (100, 0)]
    assert balance(engine_context, USER, "POINTS") == (100, 0)
    assert account_total(engine_context, USER, "points_expired", "POINTS") == 100
    assert_audit_ok(engine_context)


def test_partial_capture_settles_earliest_lots_and_releases_latest(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=5)
    grant_points(engine_context, USER, 100, ttl_days=30)
    held = charge(
        engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=150, authorize_only=True)
    )
    # Capture 100 of the 400: cash 250 and 50 points are released; 100 points are spent.
    captured = capture(engine_context, CaptureCommand(key(), held.charge_id, 100))
    assert captured.charge.released_amount == 300
    assert [(lot.remaining, lot.held) for lot in lots(engine_context, USER)] == [(0, 0), (100, 0)]
    assert balance(engine_context, USER, "POINTS") == (100, 0)
    assert balance(engine_context, USER, "CASH") == (1_000, 0)
    assert_audit_ok(engine_context)


def test_points_exchange_with_a_daily_cap(sqlite_shard_urls: list[str]) -> None:
    context = make_context(sqlite_shard_urls, exchange_daily_cap_points=3_000, exchange_points_per_fen=2)
    try:
        grant_points(context, USER, 10_000)
        first = redeem(context, RedeemCommand("ex-1", "", PointsExchangeSpec(USER, 2_000)))
        assert first.amount == 1_000
        assert balance(context, USER, "CASH") == (1_000, 0)
        assert balance(context, USER, "POINTS") == (8_000, 0)
        assert redeem(context, RedeemCommand("ex-1", "", PointsExchangeSpec(USER, 2_000))).replayed
        error = refused(
            Reason.EXCHANGE_LIMIT_REACHED,
            redeem,
            context,
            RedeemCommand("ex-2", "", PointsExchangeSpec(USER, 1_002)),
        )
        assert error.metadata["cap"] == "3000"
        refused(
            Reason.INVALID_ARGUMENT, redeem, context, RedeemCommand("ex-3", "", PointsExchangeSpec(USER, 3))
        )
        assert redeem(context, RedeemCommand("ex-4", "", PointsExchangeSpec(USER, 1_000))).amount == 500
        refused(
            Reason.EXCHANGE_LIMIT_REACHED,
            redeem,
            context,
            RedeemCommand("ex-5", "", PointsExchangeSpec(USER, 2)),
        )
        # The next business day the cap starts again.
        context.clock.advance(days=1)  # type: ignore[attr-defined]
        assert redeem(context, RedeemCommand("ex-6", "", PointsExchangeSpec(USER, 3_000))).amount == 1_500
        refused(
            Reason.INSUFFICIENT_FUNDS,
            redeem,
            context,
            RedeemCommand("ex-7", "", PointsExchangeSpec(OTHER_USER, 2)),
        )
        assert count_transactions(context, USER, "EXCHANGE") == 3
        assert account_total(context, USER, "points_funding", "CASH") == -3_000
        assert_audit_ok(context)
    finally:
        context.router.dispose()


OTHER_USER = 3004


def test_concurrent_exchanges_never_pass_the_cap(pg_shard_urls: list[str]) -> None:
    context = make_context(pg_shard_urls, exchange_daily_cap_points=3_000)
    try:
        grant_points(context, USER, 10_000)
        barrier = threading.Barrier(10)

        def attempt(index: int) -> str:
            barrier.wait(timeout=10)
            try:
                redeem(context, RedeemCommand(f"rush-{index}", "", PointsExchangeSpec(USER, 500)))
                return "ok"
            except CofferError as error:
                return error.reason.label

        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(attempt, range(10)))
        assert results.count("ok") == 6, results
        assert results.count("EXCHANGE_LIMIT_REACHED") == 4, results
        assert balance(context, USER, "POINTS") == (7_000, 0)
        assert balance(context, USER, "CASH") == (3_000, 0)
        assert_audit_ok(context)
    finally:
        context.router.dispose()


def test_earned_points_are_clawed_back_and_debt_settles_from_grants(engine_context: EngineContext) -> None:
    # The same shards and clock, with earning on: 1000 bps = 10% of the captured non-points value.
    context = EngineContext(
        engine_context.router, replace(engine_context.settings, points_earn_bps=1_000), engine_context.clock
    )
    top_up(context, USER, 10_000)
    # 10% of the 5000 paid in cash: a 500-point lot, granted in the charge's own transaction.
    order = charge(context, ChargeCommand(key(), USER, "o-1", "m-1", "", 5_000))
    assert balance(context, USER, "POINTS") == (500, 0)
    assert count_transactions(context, USER, "POINTS_GRANT") == 0
    # Spend 300 of them (points earn nothing; the 700 cash part earns 70).
    charge(context, ChargeCommand(key(), USER, "o-2", "m-1", "", 1_000, points=300))
    assert balance(context, USER, "POINTS") == (270, 0)
    # Half refunded: 250 clawed back, all available.
    refund(context, RefundCommand(key(), order.charge_id, 2_500))
    assert balance(context, USER, "POINTS") == (20, 0)
    assert get_wallet(context, USER).points_debt == 0
    # The rest: 250 more, only 20 left -> 230 become debt.
    refund(context, RefundCommand(key(), order.charge_id, 2_500))
    wallet = get_wallet(context, USER)
    assert (wallet.points_debt, balance(context, USER, "POINTS")) == (230, (0, 0))
    assert_audit_ok(context)
    # The next grant pays the debt first.
    issue(context, IssueCommand(key(), USER, PointsSpec(200, 0, "gift")))
    assert (get_wallet(context, USER).points_debt, balance(context, USER, "POINTS")) == (30, (0, 0))
    issue(context, IssueCommand(key(), USER, PointsSpec(100, 0, "gift")))
    assert (get_wallet(context, USER).points_debt, balance(context, USER, "POINTS")) == (0, (70, 0))
    assert_audit_ok(context)
    # Two-phase: points are earned on capture, on the captured part only.
    held = charge(context, ChargeCommand(key(), USER, "o-3", "m-1", "", 2_000, authorize_only=True))
    assert balance(context, USER, "POINTS") == (70, 0)
    capture(context, CaptureCommand(key(), held.charge_id, 1_500))
    assert balance(context, USER, "POINTS") == (220, 0)
    assert_audit_ok(context)


def test_points_given_back_refill_the_never_expiring_lot_first(engine_context: EngineContext) -> None:
    """A lot that never expires is the latest-expiring one: refunds and releases refill it first
    (on both databases, whatever their NULL ordering)."""
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=10)
    grant_points(engine_context, USER, 100, ttl_days=0)
    charged = charge(engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 400, points=150))
    # Spent oldest expiry first: the 10-day lot whole, then 50 of the never-expiring one.
    assert remaining(engine_context) == [0, 50]
    # Refund 250 cash + 50 points: the 50 points go back to the never-expiring lot.
    refund(engine_context, RefundCommand(key(), charged.charge_id, 300))
    assert remaining(engine_context) == [0, 100]

    assert_audit_ok(engine_context)


def test_released_points_refill_the_never_expiring_lot_first(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1_000)
    grant_points(engine_context, USER, 100, ttl_days=10)
    grant_points(engine_context, USER, 100, ttl_days=0)
    held = charge(
        engine_context, ChargeCommand(key(), USER, "o-2", "m-1", "", 400, points=150, authorize_only=True)
    )
    assert [(lot.remaining, lot.held) for lot in lots(engine_context, USER)] == [(0, 100), (50, 50)]
    # Capture 100: cash 250 and 50 points released (to the never-expiring lot), 100 points spent
    # from the 10-day lot.
    capture(engine_context, CaptureCommand(key(), held.charge_id, 100))
    assert [(lot.remaining, lot.held) for lot in lots(engine_context, USER)] == [(0, 0), (100, 0)]
    assert_audit_ok(engine_context)
