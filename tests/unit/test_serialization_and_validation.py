"""Stored answers round-trip exactly; payload fingerprints ignore context only; input checks."""

from __future__ import annotations

import pytest

from engine.domain.commands import (
    ChargeCommand,
    IssueCommand,
    LineItem,
    PointsSpec,
    RequestContext,
    TopUpSpec,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.money import MAX_REQUEST_AMOUNT_FEN, Asset, require_positive_amount
from engine.domain.results import BalanceView, Breakdown, ChargeResult, InstrumentAmount, WalletView
from engine.domain.serialization import dumps, loads, payload_digest
from engine.domain.validation import require_idempotency_key


def test_results_round_trip_through_json() -> None:
    result = ChargeResult(
        charge_id="ch_x",
        status="CAPTURED",
        breakdown=Breakdown(discount=5, cash_amount=95, gift_cards=(InstrumentAmount("A", 1),)),
        wallet=WalletView(user_id=1, balances=(BalanceView("CASH", 1, 2),)),
        transaction_id="tx_y",
    )
    assert loads(ChargeResult, dumps(result)) == result


def test_digest_ignores_context_and_sees_everything_else() -> None:
    base = ChargeCommand("k", 1, "o", "m", "", 100, items=(LineItem("s", "c", 100, 1),))
    with_context = ChargeCommand(
        "k", 1, "o", "m", "", 100, items=(LineItem("s", "c", 100, 1),), context=RequestContext(ip="1.2.3.4")
    )
    other_item = ChargeCommand("k", 1, "o", "m", "", 100, items=(LineItem("s", "d", 100, 1),))
    assert payload_digest("Charge", base) == payload_digest("Charge", with_context)
    assert payload_digest("Charge", base) != payload_digest("Charge", other_item)
    assert payload_digest("Charge", base) != payload_digest("Refund", base)


def test_digest_tells_issue_kinds_apart() -> None:
    points = IssueCommand("k", 1, PointsSpec(10, 0, ""))
    top_up = IssueCommand("k", 1, TopUpSpec(10, Asset.CASH, "a", "b"))
    assert payload_digest("Issue", points) != payload_digest("Issue", top_up)


@pytest.mark.parametrize("key", ["a", "A-z_0.9:x", "k" * 128])
def test_good_keys(key: str) -> None:
    assert require_idempotency_key(key) == key


@pytest.mark.parametrize("key", ["", "k" * 129, "has space", "slash/", "ключ"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(CofferError) as refused:
        require_idempotency_key(key)
    assert refused.value.reason is Reason.INVALID_ARGUMENT
    assert refused.value.metadata["field"] == "idempotency_key"


def test_amount_limits() -> None:
    assert require_positive_amount("amount", MAX_REQUEST_AMOUNT_FEN) == MAX_REQUEST_AMOUNT_FEN
    with pytest.raises(CofferError) as too_big:
        require_positive_amount("amount", MAX_REQUEST_AMOUNT_FEN + 1)
    assert too_big.value.reason is Reason.AMOUNT_LIMIT_EXCEEDED
    with pytest.raises(CofferError) as zero:
        require_positive_amount("amount", 0)
    assert zero.value.reason is Reason.INVALID_ARGUMENT
