"""Payment callbacks retry: one credit per (user, payment_channel, channel_txn_id)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.domain.commands import IssueCommand, TopUpSpec
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_wallet
from tests.support.wallets import available, transaction_count

USER = 31


def test_same_channel_transaction_under_a_new_key_credits_once(engine_context: EngineContext) -> None:
    first = issue(
        engine_context, IssueCommand("cb-1", USER, TopUpSpec(500, Asset.CASH, "apple_iap", "iap-7"))
    )
    second = issue(
        engine_context, IssueCommand("cb-2", USER, TopUpSpec(500, Asset.CASH, "apple_iap", "iap-7"))
    )
    assert second.replayed and second.transaction_id == first.transaction_id
    assert available(get_wallet(engine_context, USER)) == 500
    assert transaction_count(engine_context, USER, "TOP_UP") == 1
    # The new key now answers the same way on its own retries.
    assert issue(
        engine_context, IssueCommand("cb-2", USER, TopUpSpec(500, Asset.CASH, "apple_iap", "iap-7"))
    ).replayed


def test_same_channel_transaction_with_another_amount_conflicts(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("cb-1", USER, TopUpSpec(500, Asset.CASH, "alipay", "a-1")))
    with pytest.raises(CofferError) as refused:
        issue(engine_context, IssueCommand("cb-2", USER, TopUpSpec(600, Asset.CASH, "alipay", "a-1")))
    assert refused.value.reason is Reason.CHANNEL_TXN_CONFLICT
    assert available(get_wallet(engine_context, USER)) == 500


def test_same_transaction_id_on_another_channel_is_another_payment(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("cb-1", USER, TopUpSpec(500, Asset.CASH, "alipay", "n-1")))
    issue(engine_context, IssueCommand("cb-2", USER, TopUpSpec(500, Asset.CASH, "wechat", "n-1")))
    assert available(get_wallet(engine_context, USER)) == 1000


def test_concurrent_callbacks_for_one_channel_transaction(engine_context: EngineContext) -> None:
    def one(index: int) -> str:
        try:
            issue(
                engine_context,
                IssueCommand(f"cb-{index}", USER, TopUpSpec(300, Asset.COINS, "wechat", "w-9")),
            )
            return "ok"
        except CofferError as error:
            return error.reason.label

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert set(outcomes) == {"ok"}, outcomes
    assert available(get_wallet(engine_context, USER), "COINS") == 300
    assert transaction_count(engine_context, USER, "TOP_UP") == 1
    assert audit(engine_context).ok
