"""The role → RPC table (engine.api.roles) covers the protos; tokens and settings refuse what they must."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffer.v1 import admin_pb2, engine_pb2
from engine.api.auth import authorize
from engine.api.roles import ISSUE_KIND_ROLES, RPC_RULES, issue_kind, method_name
from engine.config import ConfigurationError, Settings
from engine.domain.errors import CofferError, Reason
from engine.security.identity import Caller, Role
from engine.security.tokens import CLOCK_SKEW_SECONDS, TokenVerifier, issue_token, load_token_keys

SECRET = b"s" * 40


def proto_methods() -> set[str]:
    return {
        method_name(service.full_name, method.name)
        for pb2 in (engine_pb2, admin_pb2)
        for service in pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_rpc_of_the_protos_is_in_the_role_table() -> None:
    missing = proto_methods() - set(RPC_RULES)
    assert not missing, f"RPCs with no rule in engine/api/roles.py (they are refused to everyone): {missing}"


def test_every_issue_kind_is_in_the_table() -> None:
    kinds = {field.name for field in engine_pb2.IssueRequest.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert kinds <= set(ISSUE_KIND_ROLES)


def test_a_paid_gift_card_is_a_purchase_and_a_free_one_is_promotional() -> None:
    paid = engine_pb2.IssueRequest(gift_card=engine_pb2.GiftCardIssue(amount=1, payment_channel="alipay"))
    free = engine_pb2.IssueRequest(gift_card=engine_pb2.GiftCardIssue(amount=1))
    assert ISSUE_KIND_ROLES[issue_kind(paid)] == {Role.PAYMENT_CALLBACK}
    assert ISSUE_KIND_ROLES[issue_kind(free)] == {Role.OPS}


def _refusal(method: str, caller: Caller, request: object) -> Reason:
    with pytest.raises(CofferError) as refused:
        authorize(method, RPC_RULES.get(method), caller, request)
    return refused.value.reason


def test_an_rpc_missing_from_the_table_is_refused_to_every_role() -> None:
    method = method_name("coffer.v1.TransactionEngine", "SomethingNew")
    for role in Role:
        caller = Caller("c", role, "m-1" if role is Role.POS else None)
        assert _refusal(method, caller, engine_pb2.GetWalletRequest()) is Reason.ROLE_FORBIDDEN


def test_a_till_names_only_its_merchant() -> None:
    method = method_name("coffer.v1.TransactionEngine", "Charge")
    till = Caller("till", Role.POS, "m-1")
    authorize(method, RPC_RULES[method], till, engine_pb2.ChargeRequest(merchant_id="m-1"))
    assert _refusal(method, till, engine_pb2.ChargeRequest(merchant_id="m-2")) is Reason.ROLE_FORBIDDEN


def test_a_pos_credential_without_a_merchant_is_no_identity() -> None:
    with pytest.raises(CofferError) as refused:
        Caller("till", Role.POS)
    assert refused.value.reason is Reason.UNAUTHENTICATED


def test_hs256_tokens_and_the_clock_skew_bound(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    verifier = TokenVerifier(load_token_keys(tmp_path / "secret"))
    token = issue_token(SECRET, caller="cb", role="payment_callback", ttl_seconds=60, now_s=1_000_000)
    assert verifier.caller(token, now_s=1_000_060 + CLOCK_SKEW_SECONDS).role is Role.PAYMENT_CALLBACK
    for now_s in (1_000_061 + CLOCK_SKEW_SECONDS, 1_000_000 - CLOCK_SKEW_SECONDS - 1):
        with pytest.raises(CofferError) as refused:
            verifier.caller(token, now_s=now_s)
        assert refused.value.reason is Reason.UNAUTHENTICATED
    assert CLOCK_SKEW_SECONDS <= 60


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"short")
    with pytest.raises(ValueError, match="at least"):
        load_token_keys(tmp_path / "secret")


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"auth": "token", "token_keys": "k"}, "needs TLS"),
        ({"auth": "mtls", "tls_cert": "c", "tls_key": "k"}, "COFFER_TLS_CLIENT_CA"),
        ({"auth": "token", "tls_cert": "c", "tls_key": "k"}, "COFFER_TOKEN_KEYS"),
        ({"tls_cert": "c"}, "together"),
        ({"probe_listen": "127.0.0.1:1"}, "mtls only"),
    ],
)
def test_security_settings_that_cannot_work_are_refused(overrides: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        Settings(**overrides)  # type: ignore[arg-type]
