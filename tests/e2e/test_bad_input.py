"""Bad input is refused with the right code, reason and field, and changes nothing (over gRPC)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from coffer.v1 import common_pb2, engine_pb2
from tests.support.engines import ThreadEngine
from tests.support.grpc_errors import details_of

USER = 5
LIMIT = 10**13


def top_up(**overrides: Any) -> engine_pb2.IssueRequest:
    fields: dict[str, Any] = {"idempotency_key": "k-1", "user_id": USER}
    top_up_fields = {"amount": 100, "payment_channel": "alipay", "channel_txn_id": "t-1"}
    for name in ("amount", "payment_channel", "channel_txn_id", "asset"):
        if name in overrides:
            top_up_fields[name] = overrides.pop(name)
    fields.update(overrides)
    return engine_pb2.IssueRequest(top_up=engine_pb2.TopUp(**top_up_fields), **fields)


def a_charge(**overrides: Any) -> engine_pb2.ChargeRequest:
    fields: dict[str, Any] = {
        "idempotency_key": "c-1",
        "user_id": USER,
        "order_id": "o-1",
        "merchant_id": "m-1",
        "amount": 100,
    }
    fields.update(overrides)
    return engine_pb2.ChargeRequest(**fields)


CASES: list[tuple[str, str, Callable[[], Any], str, str]] = [
    ("Issue", "zero amount", lambda: top_up(amount=0), "INVALID_ARGUMENT", "top_up.amount"),
    ("Issue", "negative amount", lambda: top_up(amount=-5), "INVALID_ARGUMENT", "top_up.amount"),
    ("Issue", "past the limit", lambda: top_up(amount=LIMIT + 1), "AMOUNT_LIMIT_EXCEEDED", "top_up.amount"),
    ("Issue", "user 0", lambda: top_up(user_id=0), "INVALID_ARGUMENT", "user_id"),
    ("Issue", "negative user", lambda: top_up(user_id=-3), "INVALID_ARGUMENT", "user_id"),
    ("Issue", "empty key", lambda: top_up(idempotency_key=""), "INVALID_ARGUMENT", "idempotency_key"),
    (
        "Issue",
        "129-char key",
        lambda: top_up(idempotency_key="k" * 129),
        "INVALID_ARGUMENT",
        "idempotency_key",
    ),
    ("Issue", "bad key chars", lambda: top_up(idempotency_key="a b"), "INVALID_ARGUMENT", "idempotency_key"),
    (
        "Issue",
        "points top-up",
        lambda: top_up(asset=common_pb2.ASSET_POINTS),
        "INVALID_ARGUMENT",
        "top_up.asset",
    ),
    ("Issue", "no channel", lambda: top_up(payment_channel=""), "INVALID_ARGUMENT", "top_up.payment_channel"),
    ("Issue", "other currency", lambda: top_up(currency="USD"), "INVALID_ARGUMENT", "currency"),
    (
        "Issue",
        "no kind",
        lambda: engine_pb2.IssueRequest(idempotency_key="k", user_id=USER),
        "INVALID_ARGUMENT",
        "kind",
    ),
    ("Charge", "zero amount", lambda: a_charge(amount=0), "INVALID_ARGUMENT", "amount"),
    ("Charge", "negative amount", lambda: a_charge(amount=-1), "INVALID_ARGUMENT", "amount"),
    ("Charge", "past the limit", lambda: a_charge(amount=LIMIT + 1), "AMOUNT_LIMIT_EXCEEDED", "amount"),
    ("Charge", "user 0", lambda: a_charge(user_id=0), "INVALID_ARGUMENT", "user_id"),
    ("Charge", "no order", lambda: a_charge(order_id=""), "INVALID_ARGUMENT", "order_id"),
    ("Charge", "negative points", lambda: a_charge(points=-1), "INVALID_ARGUMENT", "points"),
    (
        "Charge",
        "items off the amount",
        lambda: a_charge(items=[common_pb2.LineItem(sku="a", unit_price=30, quantity=3)]),
        "INVALID_ARGUMENT",
        "items",
    ),
    (
        "Charge",
        "points and coins over the order",
        lambda: a_charge(points=60, coins=60),
        "INVALID_ARGUMENT",
        "points",
    ),
    (
        "Charge",
        "129-char key",
        lambda: a_charge(idempotency_key="x" * 129),
        "INVALID_ARGUMENT",
        "idempotency_key",
    ),
    (
        "Refund",
        "zero amount",
        lambda: engine_pb2.RefundRequest(idempotency_key="r", charge_id="ch_x", amount=0),
        "INVALID_ARGUMENT",
        "amount",
    ),
    (
        "Refund",
        "negative amount",
        lambda: engine_pb2.RefundRequest(idempotency_key="r", charge_id="ch_x", amount=-10),
        "INVALID_ARGUMENT",
        "amount",
    ),
    (
        "Refund",
        "malformed charge id",
        lambda: engine_pb2.RefundRequest(idempotency_key="r", charge_id="no-such-charge", amount=10),
        "CHARGE_NOT_FOUND",
        "charge_id",
    ),
    (
        "Refund",
        "unknown charge id",
        lambda: engine_pb2.RefundRequest(
            idempotency_key="r", charge_id="ch_01zzzzzzzzzzzzzzzzzzzz", amount=10
        ),
        "CHARGE_NOT_FOUND",
        "charge_id",
    ),
    (
        "GetCharge",
        "empty id",
        lambda: engine_pb2.GetChargeRequest(charge_id=""),
        "INVALID_ARGUMENT",
        "charge_id",
    ),
    (
        "GetCharge",
        "unknown id",
        lambda: engine_pb2.GetChargeRequest(charge_id="ch_00zzzzzzzzzzzzzzzzzzzz"),
        "CHARGE_NOT_FOUND",
        "charge_id",
    ),
    ("GetWallet", "user 0", lambda: engine_pb2.GetWalletRequest(user_id=0), "INVALID_ARGUMENT", "user_id"),
    (
        "ListTransactions",
        "page too big",
        lambda: engine_pb2.ListTransactionsRequest(user_id=USER, page_size=201),
        "INVALID_ARGUMENT",
        "page_size",
    ),
    (
        "ListTransactions",
        "forged token",
        lambda: engine_pb2.ListTransactionsRequest(user_id=USER, page_token="%%%"),
        "INVALID_ARGUMENT",
        "page_token",
    ),
]

CODES = {
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "AMOUNT_LIMIT_EXCEEDED": grpc.StatusCode.INVALID_ARGUMENT,
    "CHARGE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from engine.config import Settings

    directory = tmp_path_factory.mktemp("bad-input")
    running = ThreadEngine(Settings(shards=tuple(f"sqlite:///{directory}/s{i}.db" for i in range(2))))
    running.engine.Issue(
        engine_pb2.IssueRequest(
            idempotency_key="seed",
            user_id=USER,
            top_up=engine_pb2.TopUp(amount=1000, payment_channel="seed", channel_txn_id="seed"),
        )
    )
    yield running
    running.stop()


@pytest.mark.parametrize(
    ("rpc", "label", "request_factory", "reason", "field"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_bad_input_is_refused_and_changes_nothing(
    engine: ThreadEngine, rpc: str, label: str, request_factory: Callable[[], Any], reason: str, field: str
) -> None:
    before = engine.engine.GetWallet(engine_pb2.GetWalletRequest(user_id=USER))
    history_before = engine.engine.ListTransactions(engine_pb2.ListTransactionsRequest(user_id=USER))
    with pytest.raises(grpc.RpcError) as failure:
        getattr(engine.engine, rpc)(request_factory(), timeout=10)
    details = details_of(failure.value)
    assert details.code == CODES[reason], label
    assert details.reason == reason and details.domain == "coffer"
    assert details.metadata.get("field") == field
    if reason == "INVALID_ARGUMENT":
        assert field in details.field_violations
    after = engine.engine.GetWallet(engine_pb2.GetWalletRequest(user_id=USER))
    history_after = engine.engine.ListTransactions(engine_pb2.ListTransactionsRequest(user_id=USER))
    assert after == before
    assert history_after == history_before


def test_unknown_user_reads_zero_balances(engine: ThreadEngine) -> None:
    wallet = engine.engine.GetWallet(engine_pb2.GetWalletRequest(user_id=987654321))
    assert wallet.user_id == 987654321
    assert {balance.asset: balance.available for balance in wallet.balances} == {
        common_pb2.ASSET_CASH: 0,
        common_pb2.ASSET_POINTS: 0,
        common_pb2.ASSET_COINS: 0,
    }


def test_insufficient_funds_names_the_asset(engine: ThreadEngine) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        engine.engine.Charge(a_charge(idempotency_key="too-much", amount=5000))
    details = details_of(failure.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "INSUFFICIENT_FUNDS" and details.metadata["asset"] == "CASH"
