"""Caller identity over TLS (CONTRACT §3 Security, docs/security.md), with real certificates from
the cert script: the role × RPC matrix under mTLS and under tokens, bad credentials, the till's
merchant binding, and health/reflection open without credentials.

One engine per mode for the whole session (``python server.py`` on SQLite shards)."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from coffer.v1 import admin_pb2, common_pb2, engine_pb2
from engine.api.roles import ADMIN_SERVICE, ENGINE_SERVICE
from engine.security.identity import Role
from tests.support.engines import REPOSITORY
from tests.support.grpc_errors import details_of
from tests.support.secure_clients import (
    POS_MERCHANT_ID,
    AuthMode,
    CertificateFiles,
    SecureCaller,
    SecureEngine,
    bearer,
    make_certs,
    mint_token,
    tls_channel,
)

OS, POS, PC, OPS, AUD = Role.ORDER_SERVICE, Role.POS, Role.PAYMENT_CALLBACK, Role.OPS, Role.AUDITOR
OTHER_MERCHANT = "m-other"
_numbers = itertools.count(1)


def key(label: str = "k") -> str:
    return f"{label}-{next(_numbers)}"


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """Another CA and another token-signing key: what the engine must not trust."""
    return make_certs(tmp_path_factory.mktemp("other-certs"), ca_name="an untrusted CA")


def _engine(
    mode: AuthMode, certs: CertificateFiles, factory: pytest.TempPathFactory
) -> Iterator[SecureEngine]:
    engine = SecureEngine(mode, certs, factory.mktemp(f"engine-{mode.value}"))
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def mtls_engine(certs: CertificateFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEngine]:
    yield from _engine(AuthMode.MTLS, certs, tmp_path_factory)


@pytest.fixture(scope="session")
def token_engine(certs: CertificateFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEngine]:
    yield from _engine(AuthMode.TOKEN, certs, tmp_path_factory)


@pytest.fixture(params=[AuthMode.MTLS, AuthMode.TOKEN], ids=lambda mode: mode.value)
def secure_engine(request: pytest.FixtureRequest) -> SecureEngine:
    engine: SecureEngine = request.getfixturevalue(f"{request.param.value}_engine")
    return engine


# --- requests --------------------------------------------------------------------------------


def top_up(user: int, amount: int = 1_000) -> engine_pb2.IssueRequest:
    name = key("topup")
    paid = engine_pb2.TopUp(amount=amount, payment_channel="alipay", channel_txn_id=name)
    return engine_pb2.IssueRequest(idempotency_key=name, user_id=user, top_up=paid)


def gift_card_purchase(user: int, amount: int = 500) -> engine_pb2.IssueRequest:
    name = key("gc")
    paid = engine_pb2.GiftCardIssue(amount=amount, payment_channel="alipay", channel_txn_id=name)
    return engine_pb2.IssueRequest(idempotency_key=name, user_id=user, gift_card=paid)


def charge(user: int, merchant_id: str, amount: int = 100) -> engine_pb2.ChargeRequest:
    return engine_pb2.ChargeRequest(
        idempotency_key=key("charge"),
        user_id=user,
        order_id=key("order"),
        merchant_id=merchant_id,
        amount=amount,
    )


MATRIX_USER = 4_242


@dataclass(frozen=True)
class Variant:
    """One RPC (and for Issue one kind of it), the request to send, and the roles CONTRACT §3
    admits (written out here, independently of engine.api.roles)."""

    name: str
    service: str
    rpc: str
    request: Callable[[], Any]
    allowed: frozenset[Role]


def _issue(**kind: Any) -> Callable[[], engine_pb2.IssueRequest]:
    return lambda: engine_pb2.IssueRequest(idempotency_key=key("issue"), user_id=MATRIX_USER, **kind)


E, A = ENGINE_SERVICE, ADMIN_SERVICE


def rpc(service: str, name: str, request: Callable[[], Any], *allowed: Role) -> Variant:
    return Variant(name, service, name, request, frozenset(allowed))


def issue(kind: str, request: Callable[[], Any], *allowed: Role) -> Variant:
    return Variant(f"Issue/{kind}", E, "Issue", request, frozenset(allowed))


def no_charge() -> str:
    return "ch-x"


VARIANTS = [
    issue("top_up", lambda: top_up(MATRIX_USER), PC),
    issue("gift_card purchase", lambda: gift_card_purchase(MATRIX_USER), PC),
    issue("gift_card promotional", _issue(gift_card=engine_pb2.GiftCardIssue(amount=100)), OPS),
    issue("points", _issue(points=engine_pb2.PointsGrant(points=10)), OPS),
    issue("coins", _issue(coins=engine_pb2.CoinsGrant(coins=10)), OPS),
    issue("coupon", _issue(coupon=engine_pb2.CouponClaim(template_id="tp-none")), OPS),
    issue("activity", _issue(activity=engine_pb2.ActivityGrant(activity_id="ac-none")), OPS),
    rpc(
        E,
        "IssueBatch",
        lambda: engine_pb2.IssueBatchRequest(
            items=[_issue(points=engine_pb2.PointsGrant(points=1, reason="matrix"))()]
        ),
        OPS,
    ),
    rpc(E, "Charge", lambda: charge(MATRIX_USER, POS_MERCHANT_ID), OS, POS),
    rpc(E, "Capture", lambda: engine_pb2.CaptureRequest(idempotency_key=key(), charge_id=no_charge()), OS),
    rpc(E, "Void", lambda: engine_pb2.VoidRequest(idempotency_key=key(), charge_id=no_charge()), OS),
    rpc(
        E,
        "Refund",
        lambda: engine_pb2.RefundRequest(idempotency_key=key(), charge_id=no_charge(), amount=1),
        OS,
        POS,
    ),
    rpc(
        E,
        "Redeem",
        lambda: engine_pb2.RedeemRequest(
            idempotency_key=key(),
            merchant_id=POS_MERCHANT_ID,
            gift_card=engine_pb2.GiftCardRedemption(code="NONE-NONE-NONE-00", amount=1),
        ),
        POS,
    ),
    rpc(E, "QuoteCharge", lambda: charge(MATRIX_USER, POS_MERCHANT_ID), OS),
    rpc(E, "GetWallet", lambda: engine_pb2.GetWalletRequest(user_id=MATRIX_USER), OS, AUD),
    rpc(E, "GetCharge", lambda: engine_pb2.GetChargeRequest(charge_id=no_charge()), OS, AUD),
    rpc(E, "ListTransactions", lambda: engine_pb2.ListTransactionsRequest(user_id=MATRIX_USER), OS, AUD),
    rpc(E, "GetGiftCard", lambda: engine_pb2.GetGiftCardRequest(code="NONE-NONE-NONE-00"), OS, POS, AUD),
    rpc(A, "CreateCouponTemplate", lambda: admin_pb2.CreateCouponTemplateRequest(idempotency_key=key()), OPS),
    rpc(A, "CreateActivity", lambda: admin_pb2.CreateActivityRequest(idempotency_key=key()), OPS),
    rpc(
        A, "FreezeAccount", lambda: admin_pb2.FreezeAccountRequest(idempotency_key=key(), user_id=4_243), OPS
    ),
    rpc(
        A,
        "UnfreezeAccount",
        lambda: admin_pb2.FreezeAccountRequest(idempotency_key=key(), user_id=4_243),
        OPS,
    ),
    rpc(
        A, "FreezeCoupon", lambda: admin_pb2.FreezeCouponRequest(idempotency_key=key(), coupon_id="uc-x"), OPS
    ),
    rpc(
        A,
        "UnfreezeCoupon",
        lambda: admin_pb2.FreezeCouponRequest(idempotency_key=key(), coupon_id="uc-x"),
        OPS,
    ),
    rpc(A, "Adjust", lambda: admin_pb2.AdjustRequest(idempotency_key=key()), OPS),
    rpc(A, "Audit", lambda: admin_pb2.AuditRequest(), OPS, AUD),
    rpc(A, "ListAuditEvents", lambda: admin_pb2.ListAuditEventsRequest(user_id=MATRIX_USER), OPS, AUD),
]

#: Pairs that must not only pass the auth check but succeed outright.
MUST_SUCCEED = {
    ("Issue/top_up", PC),
    ("Issue/points", OPS),
    ("GetWallet", OS),
    ("GetWallet", AUD),
    ("ListTransactions", AUD),
    ("Audit", AUD),
    ("Audit", OPS),
    ("ListAuditEvents", AUD),
    ("ListAuditEvents", OPS),
}
AUTH_REASONS = {"ROLE_FORBIDDEN", "UNAUTHENTICATED"}


def test_the_matrix_names_every_rpc_of_both_services() -> None:
    from_protos = {
        (service.full_name, method.name)
        for pb2 in (engine_pb2, admin_pb2)
        for service in pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert {(variant.service, variant.rpc) for variant in VARIANTS} == from_protos


def _stub(caller: SecureCaller, service: str) -> Any:
    return caller.engine if service == ENGINE_SERVICE else caller.admin


def test_role_rpc_matrix(secure_engine: SecureEngine) -> None:
    callers = {role: secure_engine.caller(role) for role in Role}
    problems: list[str] = []
    for variant in VARIANTS:
        for role, caller in callers.items():
            label = f"{secure_engine.mode.value}: {role.value} -> {variant.name}"
            try:
                caller.call(_stub(caller, variant.service), variant.rpc, variant.request())
            except grpc.RpcError as error:
                details = details_of(error)
                if role not in variant.allowed:
                    if (details.code, details.reason) != (
                        grpc.StatusCode.PERMISSION_DENIED,
                        "ROLE_FORBIDDEN",
                    ):
                        problems.append(
                            f"{label}: expected ROLE_FORBIDDEN, got {details.code} {details.reason}"
                        )
                elif (
                    details.reason in AUTH_REASONS
                    or details.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                    or not details.reason  # served calls fail with a contract reason, never INTERNAL
                ):
                    problems.append(f"{label}: allowed but refused with {details.code} {details.reason!r}")
                elif (variant.name, role) in MUST_SUCCEED:
                    problems.append(f"{label}: must succeed, got {details.code} {details.reason}")
            else:
                if role not in variant.allowed:
                    problems.append(f"{label}: forbidden but served")
    assert not problems, "\n".join(problems)


# --- bad credentials -------------------------------------------------------------------------


def _wallet_cash(engine: SecureEngine, user: int) -> int:
    auditor = engine.caller(AUD)
    wallet = auditor.call(auditor.engine, "GetWallet", engine_pb2.GetWalletRequest(user_id=user))
    cash = [balance.available for balance in wallet.balances if balance.asset == common_pb2.ASSET_CASH]
    history = auditor.call(
        auditor.engine, "ListTransactions", engine_pb2.ListTransactionsRequest(user_id=user)
    )
    return (cash[0] if cash else 0) + 1_000_000 * len(history.transactions)


def _refused_unauthenticated(caller: SecureCaller) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        caller.call(caller.engine, "Issue", top_up(7_001))
    details = details_of(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = Role.PAYMENT_CALLBACK.value
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def token_cli(*arguments: str) -> str:
    """``python -m engine.tokens issue ARGUMENTS``: the token it prints."""
    command = [sys.executable, "-m", "engine.tokens", "issue", *arguments]
    return subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPOSITORY).stdout.strip()


def test_bad_tokens_are_unauthenticated_and_apply_nothing(
    token_engine: SecureEngine, certs: CertificateFiles, other_certs: CertificateFiles
) -> None:
    before = _wallet_cash(token_engine, 7_001)
    expired = token_cli("--role", "payment_callback", "--ttl", "-120", "--key", str(certs.signing_key))
    bad = {
        "expired": bearer(expired),
        "another key": bearer(mint_token(other_certs, PC)),
        "tampered": bearer(_tampered(mint_token(certs, AUD))),
        "not a token": bearer("not-a-token"),
        "not bearer": (("authorization", f"Basic {mint_token(certs, PC)}"),),
        "none": (),
    }
    for _label, metadata in bad.items():
        _refused_unauthenticated(token_engine.anonymous(metadata=metadata))
    assert _wallet_cash(token_engine, 7_001) == before == 0


def test_a_fresh_token_from_the_cli_is_accepted(token_engine: SecureEngine, certs: CertificateFiles) -> None:
    token = token_cli("--role", "payment_callback", "--caller", "cb-1", "--key", str(certs.signing_key))
    caller = token_engine.anonymous(metadata=bearer(token))
    assert caller.call(caller.engine, "Issue", top_up(7_002, 300)).wallet.balances[0].available == 300


def test_bad_certificates_are_refused_and_apply_nothing(
    mtls_engine: SecureEngine, certs: CertificateFiles, other_certs: CertificateFiles
) -> None:
    before = _wallet_cash(mtls_engine, 7_001)
    # The listen port demands a client certificate of COFFER_TLS_CLIENT_CA in the handshake (the
    # only optional-certificate mode grpc's Python API has asks for none): no connection at all.
    for caller in (mtls_engine.with_certificate(other_certs.client_pair(PC)), mtls_engine.anonymous()):
        with pytest.raises(grpc.RpcError) as refused:
            caller.call(caller.engine, "Issue", top_up(7_001))
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    # On the probe port no certificate is asked for: every coffer RPC is UNAUTHENTICATED there.
    for caller in (
        mtls_engine.anonymous(port=mtls_engine.probe_port),
        mtls_engine.with_certificate(other_certs.client_pair(PC), port=mtls_engine.probe_port),
        mtls_engine.with_certificate(certs.client_pair(PC), port=mtls_engine.probe_port),
    ):
        _refused_unauthenticated(caller)
    assert _wallet_cash(mtls_engine, 7_001) == before == 0


# --- the till's merchant ---------------------------------------------------------------------


def _forbidden(call: Callable[[], Any]) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    details = details_of(refused.value)
    assert (details.code, details.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_FORBIDDEN")


def redeem_card(merchant_id: str, code: str, amount: int) -> engine_pb2.RedeemRequest:
    card = engine_pb2.GiftCardRedemption(code=code, amount=amount)
    return engine_pb2.RedeemRequest(idempotency_key=key("redeem"), merchant_id=merchant_id, gift_card=card)


def refund(charge_id: str, amount: int, idempotency_key: str | None = None) -> engine_pb2.RefundRequest:
    return engine_pb2.RefundRequest(
        idempotency_key=idempotency_key or key("refund"), charge_id=charge_id, amount=amount
    )


def test_a_till_acts_for_its_own_merchant_only(secure_engine: SecureEngine) -> None:
    user = 8_000 + next(_numbers)
    callback, orders, till = secure_engine.caller(PC), secure_engine.caller(OS), secure_engine.caller(POS)
    callback.call(callback.engine, "Issue", top_up(user, 10_000))
    card = callback.call(callback.engine, "Issue", gift_card_purchase(user, 500)).gift_card.code
    theirs = orders.call(orders.engine, "Charge", charge(user, OTHER_MERCHANT, 1_000)).charge_id
    ours = till.call(till.engine, "Charge", charge(user, POS_MERCHANT_ID, 1_000)).charge_id

    _forbidden(lambda: till.call(till.engine, "Charge", charge(user, OTHER_MERCHANT, 100)))
    _forbidden(lambda: till.call(till.engine, "Redeem", redeem_card(OTHER_MERCHANT, card, 100)))
    refund_key = key("refund")
    _forbidden(lambda: till.call(till.engine, "Refund", refund(theirs, 100, refund_key)))
    # Nothing applied: the other merchant's charge is untouched, the balance is what the charges left.
    untouched = orders.call(orders.engine, "GetCharge", engine_pb2.GetChargeRequest(charge_id=theirs))
    assert untouched.refunded_amount == 0
    wallet = orders.call(orders.engine, "GetWallet", engine_pb2.GetWalletRequest(user_id=user))
    assert wallet.balances[0].available == 10_000 - 2_000

    # ... and the key was left unclaimed: the till may use it for its own merchant's charge.
    refunded = till.call(till.engine, "Refund", refund(ours, 100, refund_key))
    assert refunded.charge.refunded_amount == 100 and not refunded.replayed
    redeemed = till.call(till.engine, "Redeem", redeem_card(POS_MERCHANT_ID, card, 100))
    assert redeemed.transaction_id
    # A till redemption is refundable by its own till (its transaction id is a charge id).
    back = till.call(till.engine, "Refund", refund(redeemed.transaction_id, 100))
    assert back.charge.refunded_amount == 100


def test_a_till_token_for_another_merchant_is_bound_to_it(token_engine: SecureEngine) -> None:
    user = 9_000 + next(_numbers)
    callback = token_engine.caller(PC)
    callback.call(callback.engine, "Issue", top_up(user, 1_000))
    other_till = token_engine.caller(POS, merchant_id=OTHER_MERCHANT)
    assert other_till.call(other_till.engine, "Charge", charge(user, OTHER_MERCHANT, 100)).charge_id
    _forbidden(lambda: other_till.call(other_till.engine, "Charge", charge(user, POS_MERCHANT_ID, 100)))


# --- open services ---------------------------------------------------------------------------


def _open_port(engine: SecureEngine) -> int:
    return engine.probe_port if engine.mode is AuthMode.MTLS else engine.port


def test_health_and_reflection_need_no_credentials(secure_engine: SecureEngine) -> None:
    with tls_channel(_open_port(secure_engine), secure_engine.certs.ca) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert {ENGINE_SERVICE, ADMIN_SERVICE, "grpc.health.v1.Health"} <= names


def test_the_tls_server_certificate_is_checked_by_clients(
    secure_engine: SecureEngine, other_certs: CertificateFiles
) -> None:
    """A client trusting another CA does not talk to this engine at all."""
    with (
        tls_channel(_open_port(secure_engine), other_certs.ca) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_the_cert_script_binds_the_pos_certificate_to_its_merchant(certs: CertificateFiles) -> None:
    pos = x509.load_pem_x509_certificate(certs.read("pos.pem"))
    names = pos.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [f"coffer:merchant:{POS_MERCHANT_ID}"]
    server = x509.load_pem_x509_certificate(certs.read("server.pem"))
    server_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in server_names.get_values_for_type(x509.DNSName)
    assert Path(certs.directory / "token.keys").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
