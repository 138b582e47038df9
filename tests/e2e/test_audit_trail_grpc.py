"""The audit trail through the served engine: over TLS the caller recorded is the token's subject
or the certificate's CN, with its role; Admin.Audit reports the chains it verified;
Admin.ListAuditEvents pages over gRPC; ``coffer audit-events --json`` reads it; without
authentication (loopback) the caller is "anonymous"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.admin.cli import main
from coffer.v1 import admin_pb2, engine_pb2
from engine.security.identity import Role
from tests.support.engines import ThreadEngine
from tests.support.secure_clients import AuthMode, SecureCaller, SecureEngine, make_certs, mint_token

USER = 7_701


@pytest.fixture(scope="module", params=[AuthMode.TOKEN, AuthMode.MTLS], ids=lambda mode: mode.value)
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureEngine]:
    certs = make_certs(tmp_path_factory.mktemp("audit-certs"))
    served = SecureEngine(request.param, certs, tmp_path_factory.mktemp(f"audit-{request.param.value}"))
    try:
        yield served
    finally:
        served.stop()


def _expected_caller(engine: SecureEngine, role: Role) -> str:
    # Token subjects come from tests.support.secure_clients.mint_token, CNs from make_certs.py.
    return f"test-{role.value}" if engine.mode is AuthMode.TOKEN else f"dev-{role.value.replace('_', '-')}"


def _mutate(engine: SecureEngine, user: int) -> str:
    callback, orders = engine.caller(Role.PAYMENT_CALLBACK), engine.caller(Role.ORDER_SERVICE)
    top_up = engine_pb2.TopUp(amount=5_000, payment_channel="alipay", channel_txn_id=f"audit-{user}")
    issue = engine_pb2.IssueRequest(idempotency_key=f"audit-top-{user}", user_id=user, top_up=top_up)
    callback.call(callback.engine, "Issue", issue)
    assert callback.call(callback.engine, "Issue", issue).replayed  # a replay writes no row
    request = engine_pb2.ChargeRequest(
        idempotency_key=f"audit-ch-{user}", user_id=user, order_id=f"o-{user}", merchant_id="m-1", amount=700
    )
    charge_id: str = orders.call(orders.engine, "Charge", request).charge_id
    refund = engine_pb2.RefundRequest(idempotency_key=f"audit-rf-{user}", charge_id=charge_id, amount=200)
    orders.call(orders.engine, "Refund", refund)
    return charge_id


def _pages(auditor: SecureCaller, **where: Any) -> list[admin_pb2.AuditEvent]:
    events: list[admin_pb2.AuditEvent] = []
    token = ""
    for _ in range(20):
        request = admin_pb2.ListAuditEventsRequest(page_size=1, page_token=token, **where)
        page = auditor.call(auditor.admin, "ListAuditEvents", request)
        events += page.events
        token = page.next_page_token
        if not token:
            return events
    raise AssertionError("paging did not end")


def test_the_recorded_caller_is_the_credential_s_caller(engine: SecureEngine, tmp_path: Path) -> None:
    charge_id = _mutate(engine, USER)
    auditor = engine.caller(Role.AUDITOR)
    events = _pages(auditor, user_id=USER)
    assert [(event.rpc, event.caller, event.role) for event in events] == [
        ("Refund", _expected_caller(engine, Role.ORDER_SERVICE), "order_service"),
        ("Charge", _expected_caller(engine, Role.ORDER_SERVICE), "order_service"),
        ("Issue", _expected_caller(engine, Role.PAYMENT_CALLBACK), "payment_callback"),
    ]
    assert [event.seq for event in events] == [3, 2, 1]
    assert events[1].amount == 700 and events[1].charge_id == charge_id and events[1].order_id == f"o-{USER}"
    assert [event.rpc for event in _pages(auditor, charge_id=charge_id)] == ["Refund", "Charge"]
    by_caller = _pages(auditor, caller=_expected_caller(engine, Role.PAYMENT_CALLBACK))
    assert [event.idempotency_key for event in by_caller] == [f"audit-top-{USER}"]
    report = auditor.call(auditor.admin, "Audit", admin_pb2.AuditRequest())
    assert report.ok and sum(shard.audit_events_checked for shard in report.shards) == 3
    if engine.mode is AuthMode.TOKEN:
        token = mint_token(engine.certs, Role.AUDITOR)
        arguments = ["--target", f"localhost:{engine.port}", "--ca", str(engine.certs.directory / "ca.pem")]
        assert main([*arguments, "--token", token, "--json", "audit-events", "--charge", charge_id]) == 0


def test_the_cli_lists_events_as_json(grpc_engine: ThreadEngine, capsys: pytest.CaptureFixture[str]) -> None:
    target = grpc_engine.target
    assert main(["--target", target, "--json", "top-up", "--user", str(USER), "--amount", "1.00"]) == 0
    capsys.readouterr()
    assert main(["--target", target, "--json", "audit-events", "--user", str(USER)]) == 0
    answer = json.loads(capsys.readouterr().out.splitlines()[0])
    (event,) = answer["response"]["events"]
    # Loopback without authentication (COFFER_AUTH=none): nobody to name.
    assert (event["caller"], event["role"], event["rpc"]) == ("anonymous", "none", "Issue")
