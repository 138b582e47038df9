"""The harness's role table (clients/loadtest/credentials.py) agrees with the engine's
(engine/api/roles.py): every RPC the client can send goes out with a role the engine admits."""

from __future__ import annotations

from clients._transport import RPCS
from clients.loadtest.credentials import ISSUE_KIND_ROLES, RPC_ROLES, Role, role_for
from coffer.v1 import engine_pb2
from engine.api import roles
from engine.security.identity import Role as EngineRole


def _engine_rule(rpc: str) -> roles.RpcRule:
    service, name = rpc.split(".", 1)
    full = roles.ENGINE_SERVICE if service == "TransactionEngine" else roles.ADMIN_SERVICE
    return roles.RPC_RULES[roles.method_name(full, name)]


def test_every_client_rpc_but_issue_has_an_admitted_role() -> None:
    assert set(RPC_ROLES) == set(RPCS) - {"TransactionEngine.Issue"}
    for rpc, role in RPC_ROLES.items():
        assert EngineRole(role.value) in _engine_rule(rpc).roles, rpc


def test_every_issue_kind_goes_out_with_an_admitted_role() -> None:
    assert set(ISSUE_KIND_ROLES) == set(roles.ISSUE_KIND_ROLES)
    for kind, role in ISSUE_KIND_ROLES.items():
        assert EngineRole(role.value) in roles.ISSUE_KIND_ROLES[kind], kind


def test_issue_requests_pick_their_role_by_kind() -> None:
    rule = _engine_rule("TransactionEngine.Issue")
    requests = {
        Role.PAYMENT_CALLBACK: [
            engine_pb2.IssueRequest(top_up=engine_pb2.TopUp(amount=100)),
            engine_pb2.IssueRequest(gift_card=engine_pb2.GiftCardIssue(amount=100, payment_channel="alipay")),
        ],
        Role.OPS: [
            engine_pb2.IssueRequest(gift_card=engine_pb2.GiftCardIssue(amount=100)),
            engine_pb2.IssueRequest(points=engine_pb2.PointsGrant(points=5)),
        ],
    }
    for role, examples in requests.items():
        for request in examples:
            assert role_for("TransactionEngine.Issue", request) is role
            assert EngineRole(role.value) in rule.allowed(request)


def test_the_client_knows_the_engine_roles() -> None:
    assert {role.value for role in Role} == {role.value for role in EngineRole}
