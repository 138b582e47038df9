"""IssueBatch's fast forms equal what the single Issue computes: the payload digest (so a key
replays across the two RPCs) and the stored answer (so either RPC can load it)."""

from __future__ import annotations

from engine.domain.commands import CoinsSpec, IssueCommand, PointsSpec, RequestContext
from engine.domain.results import BalanceView, IssueResult, WalletView
from engine.domain.serialization import dumps, loads, payload_digest, to_jsonable
from engine.service.issue import ISSUE_OPERATION
from engine.service.issue_batch import grant_digest, stored_answer


def test_the_grant_digest_is_the_payload_digest() -> None:
    for spec in (PointsSpec(100, 30, 'spring "sale" \\ ü'), CoinsSpec(7, "coins"), PointsSpec(1, 0, "")):
        command = IssueCommand("campaign:x:42", 42, spec, RequestContext(ip="10.0.0.1"))
        assert grant_digest(command, spec) == payload_digest(ISSUE_OPERATION, command)


def test_the_stored_answer_is_what_a_single_issue_stores() -> None:
    wallet = WalletView(
        user_id=42,
        balances=(BalanceView("CASH", 0, 0), BalanceView("POINTS", 100, 0), BalanceView("COINS", 3, 1)),
        frozen=True,
        points_debt=5,
    )
    result = IssueResult(transaction_id="tx_1", wallet=wallet)
    answer = stored_answer("tx_1", to_jsonable(wallet))
    assert answer == dumps(result)
    assert loads(IssueResult, answer) == result
