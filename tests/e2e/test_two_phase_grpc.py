"""Issue 3 over gRPC: Capture/Void, gift cards (Issue, Charge leg, Redeem, Refund, GetGiftCard),
points exchange, the expiry job scheduled inside the server, and ``python -m engine.jobs``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest

from coffer.v1 import admin_pb2, common_pb2, engine_pb2
from engine.config import Settings
from tests.support.engines import REPOSITORY, ThreadEngine
from tests.support.grpc_errors import details_of
from tests.support.servers import PostgresServer

USER = 4004


def issue_cash(engine: ThreadEngine, key: str, amount: int, user: int = USER) -> None:
    engine.engine.Issue(
        engine_pb2.IssueRequest(
            idempotency_key=key,
            user_id=user,
            top_up=engine_pb2.TopUp(amount=amount, payment_channel="alipay", channel_txn_id=key),
        ),
        timeout=30,
    )


def failure(call: object, request: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)  # type: ignore[operator]
    details = details_of(raised.value)
    return details.code, details.reason, details.metadata


def test_two_phase_charge_and_gift_cards_over_grpc(pg_grpc_engine: ThreadEngine) -> None:
    stub = pg_grpc_engine.engine
    issue_cash(pg_grpc_engine, "cash-1", 10_000)
    sold = stub.Issue(
        engine_pb2.IssueRequest(
            idempotency_key="card-1",
            user_id=USER,
            gift_card=engine_pb2.GiftCardIssue(amount=3_000, payment_channel="wechat", channel_txn_id="wx-9"),
        ),
        timeout=30,
    )
    code = sold.gift_card.code
    assert sold.gift_card.state == common_pb2.GIFT_CARD_STATE_ACTIVE and sold.gift_card.balance == 3_000

    authorized = stub.Charge(
        engine_pb2.ChargeRequest(
            idempotency_key="auth-1",
            user_id=USER,
            order_id="order-1",
            merchant_id="m-1",
            amount=5_000,
            gift_card_codes=[code],
            authorize_only=True,
        ),
        timeout=30,
    )
    assert authorized.status == common_pb2.CHARGE_STATUS_AUTHORIZED
    assert authorized.breakdown.gift_card_amount == 3_000 and authorized.breakdown.cash_amount == 2_000

    captured = stub.Capture(
        engine_pb2.CaptureRequest(idempotency_key="cap-1", charge_id=authorized.charge_id, amount=4_000)
    )
    assert captured.charge.status == common_pb2.CHARGE_STATUS_CAPTURED
    assert (captured.charge.captured_amount, captured.charge.released_amount) == (4_000, 1_000)
    again = stub.Capture(
        engine_pb2.CaptureRequest(idempotency_key="cap-1", charge_id=authorized.charge_id, amount=4_000)
    )
    assert again.replayed and again.charge.captured_amount == 4_000
    code_, reason, metadata = failure(
        stub.Void, engine_pb2.VoidRequest(idempotency_key="void-1", charge_id=authorized.charge_id)
    )
    assert (code_, reason, metadata["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHARGE_NOT_AUTHORIZED",
        "CAPTURED",
    )
    wallet = stub.GetWallet(engine_pb2.GetWalletRequest(user_id=USER), timeout=30)
    cash = next(b for b in wallet.balances if b.asset == common_pb2.ASSET_CASH)
    assert (cash.available, cash.held) == (9_000, 0)  # 2000 held, 1000 of it captured, 1000 released

    # The till: balance check, an all-or-nothing redemption, then a refund of it by its transaction id.
    assert stub.GetGiftCard(engine_pb2.GetGiftCardRequest(code=code), timeout=30).balance == 0
    reload = stub.Issue(
        engine_pb2.IssueRequest(
            idempotency_key="card-2", user_id=USER, gift_card=engine_pb2.GiftCardIssue(amount=500, code=code)
        ),
        timeout=30,
    )
    assert reload.gift_card.state == common_pb2.GIFT_CARD_STATE_ACTIVE and reload.gift_card.balance == 500
    code_, reason, _ = failure(
        stub.Redeem,
        engine_pb2.RedeemRequest(
            idempotency_key="till-0",
            merchant_id="shop",
            gift_card=engine_pb2.GiftCardRedemption(code=code, amount=501),
        ),
    )
    assert (code_, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    redeemed = stub.Redeem(
        engine_pb2.RedeemRequest(
            idempotency_key="till-1",
            merchant_id="shop",
            gift_card=engine_pb2.GiftCardRedemption(code=code, amount=200),
        ),
        timeout=30,
    )
    assert redeemed.amount == 200 and redeemed.gift_card.balance == 300
    refunded = stub.Refund(
        engine_pb2.RefundRequest(idempotency_key="rf-1", charge_id=redeemed.transaction_id, amount=200),
        timeout=30,
    )
    assert refunded.charge.status == common_pb2.CHARGE_STATUS_REFUNDED
    assert stub.GetGiftCard(engine_pb2.GetGiftCardRequest(code=code), timeout=30).balance == 500
    code_, reason, _ = failure(stub.GetGiftCard, engine_pb2.GetGiftCardRequest(code="0000-0000-0000-00"))
    assert (code_, reason) == (grpc.StatusCode.NOT_FOUND, "GIFT_CARD_NOT_FOUND")

    # Points exchanged for cash.
    stub.Issue(
        engine_pb2.IssueRequest(
            idempotency_key="pts-1", user_id=USER, points=engine_pb2.PointsGrant(points=1_000)
        ),
        timeout=30,
    )
    exchanged = stub.Redeem(
        engine_pb2.RedeemRequest(
            idempotency_key="ex-1", points_exchange=engine_pb2.PointsExchange(user_id=USER, points=400)
        ),
        timeout=30,
    )
    assert exchanged.amount == 400
    assert next(b for b in exchanged.wallet.balances if b.asset == common_pb2.ASSET_POINTS).available == 600

    report = pg_grpc_engine.admin.Audit(admin_pb2.AuditRequest(), timeout=60)
    assert report.ok, report


@pytest.fixture
def expiring_engine(sqlite_shard_urls: list[str]) -> Iterator[ThreadEngine]:
    engine = ThreadEngine(
        Settings(shards=tuple(sqlite_shard_urls), hold_ttl_seconds=1, job_interval_seconds=1)
    )
    try:
        yield engine
    finally:
        engine.stop()


def test_the_server_runs_the_expiry_job_itself(expiring_engine: ThreadEngine) -> None:
    stub = expiring_engine.engine
    issue_cash(expiring_engine, "cash-1", 1_000)
    held = stub.Charge(
        engine_pb2.ChargeRequest(
            idempotency_key="auth-1",
            user_id=USER,
            order_id="o-1",
            merchant_id="m",
            amount=400,
            authorize_only=True,
        ),
        timeout=30,
    )
    deadline = time.monotonic() + 20
    status = common_pb2.CHARGE_STATUS_AUTHORIZED
    while time.monotonic() < deadline:
        status = stub.GetCharge(engine_pb2.GetChargeRequest(charge_id=held.charge_id), timeout=30).status
        if status == common_pb2.CHARGE_STATUS_EXPIRED:
            break
        time.sleep(0.2)
    assert status == common_pb2.CHARGE_STATUS_EXPIRED
    wallet = stub.GetWallet(engine_pb2.GetWalletRequest(user_id=USER), timeout=30)
    assert (wallet.balances[0].available, wallet.balances[0].held) == (1_000, 0)
    code_, reason, _ = failure(
        stub.Capture, engine_pb2.CaptureRequest(idempotency_key="cap-late", charge_id=held.charge_id)
    )
    assert (code_, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_EXPIRED")
    assert expiring_engine.admin.Audit(admin_pb2.AuditRequest(), timeout=60).ok


def run_job(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.jobs", *arguments],
        cwd=REPOSITORY,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_job_command_expires_once_and_audits(postgres: PostgresServer, pg_shard_urls: list[str]) -> None:
    from engine.domain.commands import ChargeCommand
    from engine.service.charge import charge
    from tests.support.engines import make_context
    from tests.support.instruments import grant_points, top_up

    context = make_context(pg_shard_urls)
    try:
        top_up(context, USER, 1_000)
        grant_points(context, USER, 300, ttl_days=3)
        charge(context, ChargeCommand("auth-1", USER, "o-1", "m", "", 500, points=100, authorize_only=True))
    finally:
        context.router.dispose()
    environment = {"COFFER_SHARDS": ",".join(pg_shard_urls)}
    # Now: nothing due.
    first = run_job(environment, "expire")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["holds"]["changed"] == 0
    # Ten days on (ISO 8601): the hold (7 days) and the lot (3 days) are due.
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 10 * 86_400))
    second = run_job(environment, "expire", "--now", later, "--force")
    assert second.returncode == 0, second.stderr
    counts = json.loads(second.stdout)
    assert (counts["holds"]["changed"], counts["points_lots"]["changed"]) == (1, 1)
    assert "expire run at" in second.stderr
    # Same instant again, as epoch seconds: nothing changes.
    third = run_job(environment, "expire", "--now", str(int(time.time() + 10 * 86_400)), "--force")
    assert third.returncode == 0, third.stderr
    assert all(
        task["changed"] == 0 for name, task in json.loads(third.stdout).items() if isinstance(task, dict)
    )
    audited = run_job(environment, "audit")
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert json.loads(audited.stdout)["ok"] is True
    settle = run_job(environment, "settle")
    assert settle.returncode == 2 and "not available" in settle.stderr
