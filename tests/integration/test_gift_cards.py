"""Gift cards: issue, reload, balance check, states, charge legs, till redemptions and refunds.

Must-show 5 (20 concurrent till redemptions of 40 on a 500 card, PostgreSQL) and 6 (a combined
charge refunded in three partial refunds, every leg restored in the documented order).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from engine.domain import ids
from engine.domain.commands import (
    CaptureCommand,
    ChargeCommand,
    GiftCardRedemptionSpec,
    GiftCardSpec,
    IssueCommand,
    RedeemCommand,
    RefundCommand,
)
from engine.domain.errors import CofferError, Reason
from engine.jobs.run import run_expire
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.gift_cards import get_gift_card
from engine.service.issue import issue
from engine.service.queries import get_charge, get_wallet
from engine.service.redeem import redeem
from engine.service.refund import refund
from engine.storage.schema import gift_cards
from tests.support.instruments import (
    account_total,
    assert_audit_ok,
    balance,
    card,
    count_transactions,
    grant_coins,
    grant_points,
    key,
    lots,
    new_card,
    refused,
    top_up,
)

USER = 2002
OTHER = 2003


def till(context: EngineContext, code: str, amount: int, idempotency_key: str | None = None) -> object:
    return redeem(
        context, RedeemCommand(idempotency_key or key("till"), "shop-1", GiftCardRedemptionSpec(code, amount))
    )


def test_issue_through_a_channel_dedupes_and_reloads(engine_context: EngineContext) -> None:
    sold = issue(engine_context, IssueCommand("gc-1", USER, GiftCardSpec(5_000, "", "wechat", "wx-1", 365)))
    assert sold.gift_card is not None
    code = sold.gift_card.code
    assert ids.normalize_code(code) == code
    assert ids.code_virtual_shard(code) == engine_context.router.virtual_shard_of_user(USER)
    assert (sold.gift_card.balance, sold.gift_card.state) == (5_000, "ACTIVE")
    assert sold.gift_card.expires_at_us is not None
    assert [view.code for view in get_wallet(engine_context, USER).gift_cards] == [code]
    # The payment callback retried under a new key: the original answer, one card.
    again = issue(engine_context, IssueCommand("gc-2", USER, GiftCardSpec(5_000, "", "wechat", "wx-1", 365)))
    assert again.replayed and again.gift_card is not None and again.gift_card.code == code
    refused(
        Reason.CHANNEL_TXN_CONFLICT,
        issue,
        engine_context,
        IssueCommand("gc-3", USER, GiftCardSpec(4_000, "", "wechat", "wx-1", 365)),
    )
    assert account_total(engine_context, USER, "topup_clearing:wechat", "CASH") == -5_000
    # A reload (typed in lower case) adds to the same card; a promotional one comes from coupon expense.
    reloaded = issue(engine_context, IssueCommand("gc-4", USER, GiftCardSpec(700, code.lower(), "", "", 0)))
    assert reloaded.gift_card is not None and reloaded.gift_card.balance == 5_700
    assert account_total(engine_context, USER, "coupon_expense", "CASH") == -700
    assert count_transactions(engine_context, USER, "GIFT_CARD_ISSUE") == 2
    # Someone else's card, an unknown or a malformed code cannot be reloaded.
    refused(
        Reason.GIFT_CARD_NOT_FOUND,
        issue,
        engine_context,
        IssueCommand("gc-5", OTHER, GiftCardSpec(1, code, "", "", 0)),
    )
    refused(
        Reason.GIFT_CARD_NOT_FOUND,
        issue,
        engine_context,
        IssueCommand("gc-6", USER, GiftCardSpec(1, "XXXX", "", "", 0)),
    )
    refused(
        Reason.INVALID_ARGUMENT,
        issue,
        engine_context,
        IssueCommand("gc-7", USER, GiftCardSpec(1, "", "wechat", "", 0)),
    )
    assert get_gift_card(engine_context, code).balance == 5_700
    assert_audit_ok(engine_context)


def test_balance_check_refuses_unknown_and_malformed_codes(engine_context: EngineContext) -> None:
    code = new_card(engine_context, USER, 300)
    view = get_gift_card(engine_context, code.replace("-", " ").lower())
    assert (view.code, view.balance, view.held, view.state, view.user_id) == (code, 300, 0, "ACTIVE", USER)
    unknown = ids.new_code(engine_context.router.virtual_shard_of_user(USER))
    for bad in (unknown, "not-a-code", code[:-1] + ("0" if code[-1] != "0" else "1")):
        error = refused(Reason.GIFT_CARD_NOT_FOUND, get_gift_card, engine_context, bad)
        assert error.metadata["field"] == "code"


def test_till_redemption_is_all_or_nothing_and_refundable(engine_context: EngineContext) -> None:
    code = new_card(engine_context, USER, 500)
    refused(Reason.INSUFFICIENT_FUNDS, till, engine_context, code, 501)
    first = till(engine_context, code, 300, "till-a")
    assert first.amount == 300 and first.gift_card.balance == 200  # type: ignore[attr-defined]
    assert till(engine_context, code, 300, "till-a").replayed  # type: ignore[attr-defined]
    empty = till(engine_context, code, 200)
    assert empty.gift_card.state == "EMPTY"  # type: ignore[attr-defined]
    refused(Reason.GIFT_CARD_INACTIVE, till, engine_context, code, 1)
    # The transaction id is a charge id Refund accepts; the card comes back to ACTIVE.
    transaction_id = first.transaction_id  # type: ignore[attr-defined]
    view = get_charge(engine_context, transaction_id)
    assert (view.status, view.captured_amount, view.merchant_id) == ("CAPTURED", 300, "shop-1")
    refunded = refund(engine_context, RefundCommand(key("rf"), transaction_id, 120))
    assert refunded.charge.status == "PARTIALLY_REFUNDED"
    assert refunded.breakdown.gift_cards[0].instrument == code
    assert (card(engine_context, code).available, card(engine_context, code).state) == (120, "ACTIVE")
    refused(
        Reason.REFUND_EXCEEDS_CAPTURED, refund, engine_context, RefundCommand(key("rf"), transaction_id, 181)
    )
    assert refund(engine_context, RefundCommand(key("rf"), transaction_id, 180)).charge.status == "REFUNDED"
    assert card(engine_context, code).available == 300
    assert account_total(engine_context, USER, "merchant_payable:shop-1", "CASH") == 200
    assert count_transactions(engine_context, USER, "REDEEM") == 2
    assert_audit_ok(engine_context)


def test_concurrent_till_redemptions_never_pass_the_balance(pg_context: EngineContext) -> None:
    """Must-show 5: 500 on the card, 20 redemptions of 40 at once -> exactly 12 succeed, 20 left."""
    code = new_card(pg_context, USER, 500)
    barrier = threading.Barrier(20)

    def attempt(index: int) -> str:
        barrier.wait(timeout=10)
        try:
            till(pg_context, code, 40, f"rush-{index}")
            return "ok"
        except CofferError as error:
            return error.reason.label

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count("ok") == 12, results
    assert results.count("INSUFFICIENT_FUNDS") == 8, results
    assert get_gift_card(pg_context, code).balance == 20
    assert count_transactions(pg_context, USER, "REDEEM") == 12
    assert account_total(pg_context, USER, "merchant_payable:shop-1", "CASH") == 480
    assert_audit_ok(pg_context)


def test_card_states_refuse_use(engine_context: EngineContext) -> None:
    mine = new_card(engine_context, USER, 1_000, ttl_days=1)
    theirs = new_card(engine_context, OTHER, 1_000)
    top_up(engine_context, USER, 5_000)
    order = ChargeCommand(key(), USER, "o-x", "m-1", "", 500, gift_card_codes=(theirs,))
    refused(Reason.GIFT_CARD_NOT_FOUND, charge, engine_context, order)
    refused(
        Reason.INVALID_ARGUMENT,
        charge,
        engine_context,
        ChargeCommand(key(), USER, "o-x", "m-1", "", 500, gift_card_codes=(mine, mine.lower())),
    )
    # FROZEN (an operator's or risk control's decision) refuses every use.
    shard = engine_context.router.for_code(theirs)
    assert shard is not None
    with shard.engine.begin() as connection:
        connection.execute(update(gift_cards).where(gift_cards.c.code == theirs).values(state="FROZEN"))
    refused(Reason.GIFT_CARD_INACTIVE, till, engine_context, theirs, 10)
    # Past its expiry a card is EXPIRED at once, before the job records it.
    engine_context.clock.advance(days=2)  # type: ignore[attr-defined]
    assert get_gift_card(engine_context, mine).state == "EXPIRED"
    refused(
        Reason.GIFT_CARD_INACTIVE,
        charge,
        engine_context,
        ChargeCommand(key(), USER, "o-y", "m-1", "", 500, gift_card_codes=(mine,)),
    )
    refused(Reason.GIFT_CARD_INACTIVE, till, engine_context, mine, 10)
    refused(
        Reason.GIFT_CARD_INACTIVE,
        issue,
        engine_context,
        IssueCommand(key(), USER, GiftCardSpec(10, mine, "", "", 0)),
    )
    first = run_expire(engine_context)
    assert first.changed("gift_cards") == 1
    expired = card(engine_context, mine)
    # The balance stays on the card (the float's liability); only the state changes.
    assert (expired.state, expired.available) == ("EXPIRED", 1_000)
    assert count_transactions(engine_context, USER, "EXPIRE") == 1
    assert run_expire(engine_context).changed("gift_cards") == 0
    assert count_transactions(engine_context, USER, "EXPIRE") == 1
    assert_audit_ok(engine_context)


def combined_setup(context: EngineContext) -> tuple[str, str]:
    top_up(context, USER, 10_000)
    grant_coins(context, USER, 2_000)
    grant_points(context, USER, 1_000, ttl_days=10)
    grant_points(context, USER, 3_000, ttl_days=30)
    return new_card(context, USER, 1_000), new_card(context, USER, 1_500)


@pytest.mark.parametrize("two_phase", [False, True], ids=["immediate", "authorize-capture"])
def test_combined_charge_refunded_in_three_parts(engine_context: EngineContext, two_phase: bool) -> None:
    """Must-show 6: points 2000 + coins 1500 + gift cards 1000 and 1500 + cash 4000 = 10000.

    Refunds of 3000, 3000 and 4000 go back cash first, then the gift cards (the last drawn
    first), coins, points — and a fourth refund finds nothing left."""
    card_a, card_b = combined_setup(engine_context)
    command = ChargeCommand(
        key(),
        USER,
        "o-combined",
        "m-1",
        "",
        10_000,
        points=2_000,
        coins=1_500,
        gift_card_codes=(card_a, card_b),
        authorize_only=two_phase,
    )
    charged = charge(engine_context, command)
    breakdown = charged.breakdown
    assert (
        breakdown.points_value,
        breakdown.coins_used,
        breakdown.gift_card_amount,
        breakdown.cash_amount,
    ) == (
        2_000,
        1_500,
        2_500,
        4_000,
    )
    if two_phase:
        assert (
            capture(engine_context, CaptureCommand(key(), charged.charge_id, 0)).charge.captured_amount
            == 10_000
        )
    assert balance(engine_context, USER, "CASH") == (6_000, 0)
    assert balance(engine_context, USER, "COINS") == (500, 0)
    assert balance(engine_context, USER, "POINTS") == (2_000, 0)
    assert card(engine_context, card_a).available == card(engine_context, card_b).available == 0
    # FIFO: the 10-day lot (1000) first, then 1000 of the 30-day lot.
    assert [lot.remaining for lot in lots(engine_context, USER)] == [0, 2_000]

    # (refund, cash, card A, card B, coins, points) after each step, as balances.
    steps = [
        (3_000, 9_000, 0, 0, 500, 2_000),
        (3_000, 10_000, 500, 1_500, 500, 2_000),
        (4_000, 10_000, 1_000, 1_500, 2_000, 4_000),
    ]
    refunded_total = 0
    for amount, cash, a, b, coins, points in steps:
        result = refund(engine_context, RefundCommand(key("rf"), charged.charge_id, amount))
        refunded_total += amount
        assert result.charge.refunded_amount == refunded_total <= result.charge.captured_amount
        assert balance(engine_context, USER, "CASH") == (cash, 0)
        assert card(engine_context, card_a).available == a
        assert card(engine_context, card_b).available == b
        assert balance(engine_context, USER, "COINS") == (coins, 0)
        assert balance(engine_context, USER, "POINTS") == (points, 0)
        assert_audit_ok(engine_context)
    assert result.charge.status == "REFUNDED"
    # The points went back to the lots they came from.
    assert [lot.remaining for lot in lots(engine_context, USER)] == [1_000, 3_000]
    assert card(engine_context, card_a).state == card(engine_context, card_b).state == "ACTIVE"
    refused(
        Reason.REFUND_EXCEEDS_CAPTURED, refund, engine_context, RefundCommand(key("rf"), charged.charge_id, 1)
    )
    view = get_charge(engine_context, charged.charge_id)
    assert [item.amount for item in view.refunds] == [3_000, 3_000, 4_000]
    assert [(g.instrument, g.amount) for g in view.refunds[1].breakdown.gift_cards] == [
        (card_b, 1_500),
        (card_a, 500),
    ]
    last = view.refunds[2].breakdown
    assert (last.cash_amount, last.gift_card_amount, last.coins_used, last.points_value) == (
        0,
        500,
        1_500,
        2_000,
    )
    assert account_total(engine_context, USER, "merchant_payable:m-1", "CASH") == 0
    assert_audit_ok(engine_context)
