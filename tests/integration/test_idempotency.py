"""CONTRACT §1 idempotency: replays, reuse with another payload, concurrent requests with one key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.domain.commands import (
    ChargeCommand,
    CoinsSpec,
    IssueCommand,
    PointsSpec,
    RefundCommand,
    RequestContext,
    TopUpSpec,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.refund import refund
from tests.support.wallets import available, transaction_count

USER = 1001


def top_up(context: EngineContext, user_id: int, amount: int, key: str, txn: str) -> None:
    issue(context, IssueCommand(key, user_id, TopUpSpec(amount, Asset.CASH, "wechat", txn)))


def test_issue_replay_returns_identical_response_once(engine_context: EngineContext) -> None:
    command = IssueCommand("issue-1", USER, TopUpSpec(1000, Asset.CASH, "alipay", "ali-1"))
    first = issue(engine_context, command)
    second = issue(engine_context, command)
    assert not first.replayed and second.replayed
    assert second.transaction_id == first.transaction_id
    assert second.wallet == first.wallet
    assert available(issue(engine_context, command).wallet) == 1000
    assert transaction_count(engine_context, USER) == 1


def test_context_is_not_part_of_the_payload(engine_context: EngineContext) -> None:
    command = IssueCommand("points-1", USER, PointsSpec(50, 0, "welcome"))
    issue(engine_context, command)
    again = IssueCommand("points-1", USER, PointsSpec(50, 0, "welcome"), RequestContext(ip="10.0.0.1"))
    assert issue(engine_context, again).replayed


def test_charge_and_refund_replay_without_second_effect(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1000, "t", "t")
    charge_command = ChargeCommand("charge-1", USER, "order-1", "m-1", "app", 400)
    first = charge(engine_context, charge_command)
    replay = charge(engine_context, charge_command)
    assert replay.replayed and replay.charge_id == first.charge_id
    assert replay.breakdown == first.breakdown and replay.wallet == first.wallet
    refund_command = RefundCommand("refund-1", first.charge_id, 150, reason="damaged")
    refunded = refund(engine_context, refund_command)
    refund_replay = refund(engine_context, refund_command)
    assert refund_replay.replayed and refund_replay.refund_id == refunded.refund_id
    assert refund_replay.charge == refunded.charge
    assert available(refund_replay.wallet) == 1000 - 400 + 150
    assert transaction_count(engine_context, USER, "CHARGE") == 1
    assert transaction_count(engine_context, USER, "REFUND") == 1
    assert audit(engine_context).ok


@pytest.mark.parametrize(
    "first, second",
    [
        (
            IssueCommand("k", USER, TopUpSpec(1000, Asset.CASH, "alipay", "a")),
            IssueCommand("k", USER, TopUpSpec(999, Asset.CASH, "alipay", "a")),
        ),
        (
            IssueCommand("k", USER, CoinsSpec(10, "")),
            IssueCommand("k", USER, PointsSpec(10, 0, "")),
        ),
    ],
)
def test_same_key_other_payload_is_refused(
    engine_context: EngineContext, first: IssueCommand, second: IssueCommand
) -> None:
    issue(engine_context, first)
    with pytest.raises(CofferError) as refused:
        issue(engine_context, second)
    assert refused.value.reason is Reason.IDEMPOTENCY_KEY_REUSED
    assert transaction_count(engine_context, USER) == 1


def test_charge_key_reused_with_other_amount(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 1000, "t", "t")
    charge(engine_context, ChargeCommand("c", USER, "o", "m", "", 100))
    with pytest.raises(CofferError) as refused:
        charge(engine_context, ChargeCommand("c", USER, "o", "m", "", 101))
    assert refused.value.reason is Reason.IDEMPOTENCY_KEY_REUSED
    with pytest.raises(CofferError) as refused_refund:
        refund(engine_context, RefundCommand("c", "ch_00000000000000000000000000", 1))
    # A refund naming an unknown charge is NOT_FOUND before any key is looked at.
    assert refused_refund.value.reason is Reason.CHARGE_NOT_FOUND


def test_rejected_request_leaves_no_trace_and_can_be_retried(engine_context: EngineContext) -> None:
    command = ChargeCommand("retry-me", USER, "o-9", "m", "", 500)
    with pytest.raises(CofferError) as refused:
        charge(engine_context, command)
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    assert refused.value.metadata["asset"] == "CASH"
    top_up(engine_context, USER, 500, "t", "t")
    result = charge(engine_context, command)
    assert not result.replayed and available(result.wallet) == 0


def test_fifty_concurrent_charges_with_one_key_have_one_effect(engine_context: EngineContext) -> None:
    top_up(engine_context, USER, 10_000, "t", "t")
    command = ChargeCommand("same-key", USER, "order-x", "m-1", "", 700)

    def attempt(_: int) -> str:
        try:
            return charge(engine_context, command).charge_id
        except CofferError as error:
            return error.reason.label

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    charge_ids = {outcome for outcome in outcomes if outcome.startswith("ch_")}
    others = [outcome for outcome in outcomes if not outcome.startswith("ch_")]
    assert len(charge_ids) == 1, outcomes
    assert set(others) <= {"IDEMPOTENCY_KEY_IN_USE"}, others
    assert transaction_count(engine_context, USER, "CHARGE") == 1
    wallet_after = charge(engine_context, command).wallet
    assert available(wallet_after) == 10_000 - 700
    assert audit(engine_context).ok
