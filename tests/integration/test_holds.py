"""Two-phase charges: authorize, (partial) capture, void, hold expiry — on PostgreSQL and SQLite.

Must-show 1 (partial capture releases the rest), 2 (Capture vs Void race, PostgreSQL) and
3 (expired hold released by the job, not capturable, second run a no-op) of issue 3.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.domain.commands import CaptureCommand, ChargeCommand, VoidCommand
from engine.domain.errors import CofferError, Reason
from engine.jobs.run import run_expire
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.queries import get_charge
from engine.service.void import void
from tests.support.instruments import (
    assert_audit_ok,
    balance,
    card,
    count_transactions,
    entries_of,
    grant_coins,
    grant_points,
    key,
    lots,
    new_card,
    refused,
    top_up,
)

USER = 1001


def fund(context: EngineContext, user_id: int = USER) -> str:
    """Cash 10000, coins 1000, points 1000 (30-day lot), a 2000 gift card."""
    top_up(context, user_id, 10_000)
    grant_coins(context, user_id, 1_000)
    grant_points(context, user_id, 1_000, ttl_days=30)
    return new_card(context, user_id, 2_000)


def authorize(context: EngineContext, code: str, order: str = "o-1", user_id: int = USER) -> str:
    """5000 paid: points 1000, coins 500, gift card 2000, cash 1500 — all held."""
    result = charge(
        context,
        ChargeCommand(
            key("auth"),
            user_id,
            order,
            "m-1",
            "",
            5_000,
            points=1_000,
            coins=500,
            gift_card_codes=(code,),
            authorize_only=True,
        ),
    )
    assert result.status == "AUTHORIZED"
    assert (result.breakdown.points_value, result.breakdown.coins_used) == (1_000, 500)
    assert (result.breakdown.gift_card_amount, result.breakdown.cash_amount) == (2_000, 1_500)
    return result.charge_id


def test_authorization_holds_every_leg(engine_context: EngineContext) -> None:
    code = fund(engine_context)
    authorize(engine_context, code)
    assert balance(engine_context, USER, "CASH") == (8_500, 1_500)
    assert balance(engine_context, USER, "COINS") == (500, 500)
    assert balance(engine_context, USER, "POINTS") == (0, 1_000)
    assert (card(engine_context, code).available, card(engine_context, code).held) == (0, 2_000)
    assert lots(engine_context, USER)[0].held == 1_000
    assert_audit_ok(engine_context)


# capture amount -> what each leg captures (points, coins, gift card, cash); the rest is released
# cash first, then the gift card, coins, points.
SPLITS = [
    (3_000, (1_000, 500, 1_500, 0)),
    (500, (500, 0, 0, 0)),
    (1_700, (1_000, 500, 200, 0)),
    (4_999, (1_000, 500, 2_000, 1_499)),
    (0, (1_000, 500, 2_000, 1_500)),
]


@pytest.mark.parametrize(("amount", "captured"), SPLITS)
def test_partial_capture_releases_the_rest_in_reverse_order(
    engine_context: EngineContext, amount: int, captured: tuple[int, int, int, int]
) -> None:
    code = fund(engine_context)
    charge_id = authorize(engine_context, code)
    result = capture(engine_context, CaptureCommand(key("cap"), charge_id, amount))
    points, coins, gift, cash = captured
    total = sum(captured)
    view = result.charge
    assert (view.status, view.captured_amount, view.released_amount) == ("CAPTURED", total, 5_000 - total)
    # Every held amount is gone: captured for good or back in available.
    assert balance(engine_context, USER, "CASH") == (10_000 - cash, 0)
    assert balance(engine_context, USER, "COINS") == (1_000 - coins, 0)
    assert balance(engine_context, USER, "POINTS") == (1_000 - points, 0)
    gift_card = card(engine_context, code)
    assert (gift_card.available, gift_card.held) == (2_000 - gift, 0)
    assert gift_card.state == ("EMPTY" if gift == 2_000 else "ACTIVE")
    lot = lots(engine_context, USER)[0]
    assert (lot.remaining, lot.held) == (1_000 - points, 0)
    # The capture transaction sums to zero per asset and pays the merchant exactly what was captured.
    entries = entries_of(engine_context, USER, _last_transaction(engine_context, charge_id, "CAPTURE"))
    for asset in ("CASH", "COINS", "POINTS"):
        assert sum(entry.amount for entry in entries if entry.asset == asset) == 0
    assert sum(entry.amount for entry in entries if entry.account == "merchant_payable:m-1") == total
    assert_audit_ok(engine_context)


def _last_transaction(context: EngineContext, charge_id: str, kind: str) -> str:
    from sqlalchemy import select

    from engine.storage.schema import ledger_transactions

    shard = context.router.for_id(charge_id)
    assert shard is not None
    with shard.engine.connect() as connection:
        return str(
            connection.execute(
                select(ledger_transactions.c.transaction_id).where(
                    ledger_transactions.c.charge_id == charge_id, ledger_transactions.c.type == kind
                )
            ).scalar_one()
        )


def test_capture_refusals_and_replay(engine_context: EngineContext) -> None:
    code = fund(engine_context)
    charge_id = authorize(engine_context, code)
    refused(
        Reason.CAPTURE_EXCEEDS_AUTHORIZED, capture, engine_context, CaptureCommand(key(), charge_id, 5_001)
    )
    refused(
        Reason.CHARGE_NOT_FOUND,
        capture,
        engine_context,
        CaptureCommand(key(), "ch_zzzzzzzzzzzzzzzzzzzzzz", 0),
    )
    first = capture(engine_context, CaptureCommand("cap-once", charge_id, 4_000))
    again = capture(engine_context, CaptureCommand("cap-once", charge_id, 4_000))
    assert again.replayed and not first.replayed
    assert again.charge == first.charge
    refused(
        Reason.IDEMPOTENCY_KEY_REUSED, capture, engine_context, CaptureCommand("cap-once", charge_id, 3_000)
    )
    refused(Reason.CHARGE_NOT_AUTHORIZED, capture, engine_context, CaptureCommand(key(), charge_id, 0))
    refused(Reason.CHARGE_NOT_AUTHORIZED, void, engine_context, VoidCommand(key(), charge_id))
    assert count_transactions(engine_context, USER, "CAPTURE") == 1
    # An immediate charge was never authorized.
    immediate = charge(engine_context, ChargeCommand(key(), USER, "o-2", "m-1", "", 100))
    refused(
        Reason.CHARGE_NOT_AUTHORIZED, capture, engine_context, CaptureCommand(key(), immediate.charge_id, 0)
    )
    assert_audit_ok(engine_context)


def test_void_releases_every_leg_once(engine_context: EngineContext) -> None:
    code = fund(engine_context)
    charge_id = authorize(engine_context, code)
    result = void(engine_context, VoidCommand("void-1", charge_id))
    assert (result.charge.status, result.charge.released_amount, result.charge.captured_amount) == (
        "VOIDED",
        5_000,
        0,
    )
    assert balance(engine_context, USER, "CASH") == (10_000, 0)
    assert balance(engine_context, USER, "COINS") == (1_000, 0)
    assert balance(engine_context, USER, "POINTS") == (1_000, 0)
    assert (card(engine_context, code).available, card(engine_context, code).state) == (2_000, "ACTIVE")
    assert (lots(engine_context, USER)[0].remaining, lots(engine_context, USER)[0].held) == (1_000, 0)
    assert void(engine_context, VoidCommand("void-1", charge_id)).replayed
    refused(Reason.CHARGE_NOT_AUTHORIZED, void, engine_context, VoidCommand(key(), charge_id))
    refused(Reason.CHARGE_NOT_AUTHORIZED, capture, engine_context, CaptureCommand(key(), charge_id, 0))
    assert count_transactions(engine_context, USER, "VOID") == 1
    # The order is free again: a voided charge is not live.
    again = charge(engine_context, ChargeCommand(key(), USER, "o-1", "m-1", "", 300))
    assert again.status == "CAPTURED"
    assert_audit_ok(engine_context)


def test_expired_hold_is_released_by_the_job_and_not_capturable(engine_context: EngineContext) -> None:
    code = fund(engine_context)
    charge_id = authorize(engine_context, code)
    engine_context.clock.advance(seconds=engine_context.settings.hold_ttl_seconds + 1)  # type: ignore[attr-defined]
    # Past its expiry the hold cannot be captured, even before the job has run.
    refused(Reason.HOLD_EXPIRED, capture, engine_context, CaptureCommand(key(), charge_id, 0))
    assert get_charge(engine_context, charge_id).status == "AUTHORIZED"

    first = run_expire(engine_context)
    assert first.changed("holds") == 1
    view = get_charge(engine_context, charge_id)
    assert (view.status, view.released_amount, view.captured_amount) == ("EXPIRED", 5_000, 0)
    assert balance(engine_context, USER, "CASH") == (10_000, 0)
    assert balance(engine_context, USER, "COINS") == (1_000, 0)
    assert balance(engine_context, USER, "POINTS") == (1_000, 0)
    assert card(engine_context, code).available == 2_000
    assert count_transactions(engine_context, USER, "EXPIRE") == 1
    refused(Reason.HOLD_EXPIRED, capture, engine_context, CaptureCommand(key(), charge_id, 0))
    refused(Reason.CHARGE_NOT_AUTHORIZED, void, engine_context, VoidCommand(key(), charge_id))
    assert_audit_ok(engine_context)

    transactions_before = count_transactions(engine_context, USER)
    second = run_expire(engine_context)
    assert all(count.changed == 0 for count in second.tasks.values()), second.summary()
    assert count_transactions(engine_context, USER) == transactions_before
    assert get_charge(engine_context, charge_id).status == "EXPIRED"
    assert_audit_ok(engine_context)


def test_a_hold_not_yet_due_is_left_alone(engine_context: EngineContext) -> None:
    code = fund(engine_context)
    charge_id = authorize(engine_context, code)
    engine_context.clock.advance(seconds=engine_context.settings.hold_ttl_seconds - 60)  # type: ignore[attr-defined]
    assert run_expire(engine_context).changed("holds") == 0
    assert capture(engine_context, CaptureCommand(key(), charge_id, 0)).charge.status == "CAPTURED"
    assert_audit_ok(engine_context)


def test_capture_and_void_race_exactly_one_wins(pg_context: EngineContext) -> None:
    """Must-show 2: 100 trials, Capture and Void released together on one charge each time."""
    trials = 100
    top_up(pg_context, USER, 100 * trials)
    outcomes: list[tuple[bool, bool]] = []
    captured_total = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for trial in range(trials):
            charge_id = charge(
                pg_context,
                ChargeCommand(key(), USER, f"race-{trial}", "m-1", "", 100, authorize_only=True),
            ).charge_id
            barrier = threading.Barrier(2)

            def attempt(
                operation: str, charge_id: str = charge_id, barrier: threading.Barrier = barrier
            ) -> bool:
                barrier.wait(timeout=10)
                try:
                    if operation == "capture":
                        capture(pg_context, CaptureCommand(key(), charge_id, 0))
                    else:
                        void(pg_context, VoidCommand(key(), charge_id))
                    return True
                except CofferError as error:
                    assert error.reason is Reason.CHARGE_NOT_AUTHORIZED, error
                    return False

            captured_future = pool.submit(attempt, "capture")
            voided_future = pool.submit(attempt, "void")
            captured, voided = captured_future.result(timeout=30), voided_future.result(timeout=30)
            assert captured != voided, f"trial {trial}: capture={captured} void={voided}"
            status = get_charge(pg_context, charge_id).status
            assert status == ("CAPTURED" if captured else "VOIDED")
            captured_total += 100 if captured else 0
            outcomes.append((captured, voided))
    assert len(outcomes) == trials
    wins = sum(1 for captured, _ in outcomes if captured)
    print(f"capture/void race: capture won {wins}, void won {trials - wins} of {trials}")
    assert balance(pg_context, USER, "CASH") == (100 * trials - captured_total, 0)
    assert (
        count_transactions(pg_context, USER, "CAPTURE") + count_transactions(pg_context, USER, "VOID")
        == trials
    )
    assert_audit_ok(pg_context)


def test_void_and_expiry_job_race_exactly_one_resolves(pg_context: EngineContext) -> None:
    """A hold past its expiry: the job and a Void released together — one release, never two."""
    trials = 20
    top_up(pg_context, USER, 100 * trials)
    charge_ids = [
        charge(
            pg_context, ChargeCommand(key(), USER, f"exp-{trial}", "m-1", "", 100, authorize_only=True)
        ).charge_id
        for trial in range(trials)
    ]
    pg_context.clock.advance(seconds=pg_context.settings.hold_ttl_seconds + 1)  # type: ignore[attr-defined]
    with ThreadPoolExecutor(max_workers=2) as pool:
        barrier = threading.Barrier(2)

        def job() -> int:
            barrier.wait(timeout=10)
            return run_expire(pg_context).changed("holds")

        def voids() -> int:
            barrier.wait(timeout=10)
            won = 0
            for charge_id in reversed(charge_ids):
                try:
                    void(pg_context, VoidCommand(key(), charge_id))
                    won += 1
                except CofferError as error:
                    assert error.reason is Reason.CHARGE_NOT_AUTHORIZED, error
            return won

        job_future, void_future = pool.submit(job), pool.submit(voids)
        expired, voided = job_future.result(timeout=60), void_future.result(timeout=60)
    assert expired + voided == trials
    statuses = [get_charge(pg_context, charge_id).status for charge_id in charge_ids]
    assert statuses.count("EXPIRED") == expired and statuses.count("VOIDED") == voided
    assert (
        count_transactions(pg_context, USER, "EXPIRE") + count_transactions(pg_context, USER, "VOID")
        == trials
    )
    assert balance(pg_context, USER, "CASH") == (100 * trials, 0)
    assert_audit_ok(pg_context)
