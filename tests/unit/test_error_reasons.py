"""The error reasons are declared once (ErrorReason in common.proto) and every view agrees with it
and with CONTRACT §4."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from clients import errors as client_errors
from coffer.v1 import common_pb2
from engine.api.errors import to_status
from engine.domain.errors import CofferError, Reason
from engine.domain.reasons import REASON_CODES, Code
from scripts import gen_reasons

#: CONTRACT §4, copied by hand on purpose: the test is the second opinion on the proto.
CONTRACT_SECTION_4: dict[str, tuple[str, ...]] = {
    "INVALID_ARGUMENT": ("INVALID_ARGUMENT", "AMOUNT_LIMIT_EXCEEDED"),
    "FAILED_PRECONDITION": (
        "INSUFFICIENT_FUNDS",
        "ACCOUNT_FROZEN",
        "COUPON_EXPIRED",
        "COUPON_NOT_ACTIVE",
        "COUPON_ALREADY_USED",
        "COUPON_FROZEN",
        "COUPON_NOT_APPLICABLE",
        "MIN_SPEND_NOT_MET",
        "COUPONS_NOT_STACKABLE",
        "GIFT_CARD_INACTIVE",
        "POINTS_LIMIT_EXCEEDED",
        "CAPTURE_EXCEEDS_AUTHORIZED",
        "CHARGE_NOT_AUTHORIZED",
        "CHARGE_NOT_CAPTURED",
        "HOLD_EXPIRED",
        "REFUND_EXCEEDS_CAPTURED",
        "STEP_UP_REQUIRED",
        "ACTIVITY_NOT_ELIGIBLE",
        "ILLEGAL_STATE_TRANSITION",
    ),
    "NOT_FOUND": (
        "CHARGE_NOT_FOUND",
        "COUPON_NOT_FOUND",
        "GIFT_CARD_NOT_FOUND",
        "TEMPLATE_NOT_FOUND",
        "ACTIVITY_NOT_FOUND",
    ),
    "ALREADY_EXISTS": (
        "IDEMPOTENCY_KEY_REUSED",
        "CHANNEL_TXN_CONFLICT",
        "ORDER_ALREADY_CHARGED",
        "ACTIVITY_ALREADY_GRANTED",
    ),
    "RESOURCE_EXHAUSTED": (
        "STOCK_EXHAUSTED",
        "CLAIM_LIMIT_REACHED",
        "EXCHANGE_LIMIT_REACHED",
        "WITHDRAWAL_LIMIT_REACHED",
        "RATE_LIMITED",
    ),
    "PERMISSION_DENIED": ("RISK_REJECTED", "ROLE_FORBIDDEN"),
    "UNAUTHENTICATED": ("UNAUTHENTICATED",),
    "ABORTED": ("IDEMPOTENCY_KEY_IN_USE", "CONTENTION"),
    "UNAVAILABLE": ("STORAGE_UNAVAILABLE",),
}
CONTRACT_CODES = {reason: code for code, reasons in CONTRACT_SECTION_4.items() for reason in reasons}


def _proto_reasons() -> dict[str, str]:
    """ErrorReason name -> its grpc_code option, read from the compiled stubs."""
    values = common_pb2.ErrorReason.DESCRIPTOR.values
    return {
        value.name: value.GetOptions().Extensions[common_pb2.grpc_code]
        for value in values
        if value.number != common_pb2.ERROR_REASON_UNSPECIFIED
    }


def test_engine_reasons_are_the_proto_enum() -> None:
    assert {reason.label for reason in Reason} == set(_proto_reasons())
    assert [reason.label for reason in Reason] == list(_proto_reasons())
    for reason in Reason:
        assert reason.value == reason.name == reason.label
        assert common_pb2.ErrorReason.Value(reason.label) > 0


def test_every_contract_reason_is_declared_under_its_contract_code() -> None:
    assert set(_proto_reasons()) == set(CONTRACT_CODES)
    assert _proto_reasons() == CONTRACT_CODES
    for reason in Reason:
        assert reason.code.value == CONTRACT_CODES[reason.label]
        assert REASON_CODES[reason] is reason.code
    assert {code.value for code in Code} == set(CONTRACT_SECTION_4)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda reason: reason.label)
def test_the_engine_sends_each_reason_under_its_contract_code(reason: Reason) -> None:
    status = to_status(CofferError(reason, "refused"))
    assert status.code == getattr(grpc.StatusCode, CONTRACT_CODES[reason.label])


def test_client_exceptions_are_the_proto_enum() -> None:
    assert set(client_errors.REASON_CLASSES) == set(_proto_reasons())
    for name, code in _proto_reasons().items():
        cls = client_errors.REASON_CLASSES[name]
        assert cls.reason_name == name
        assert issubclass(cls, client_errors.CODE_CLASSES[getattr(grpc.StatusCode, code)])
        error = cls(name, "refused", code=getattr(grpc.StatusCode, code))
        assert error.error_reason == common_pb2.ErrorReason.Value(name)
    unknown = client_errors.CofferError("UNAVAILABLE", "", code=grpc.StatusCode.UNAVAILABLE)
    assert unknown.error_reason == common_pb2.ERROR_REASON_UNSPECIFIED


def test_generated_modules_are_current(tmp_path: Path) -> None:
    assert gen_reasons.main(["--out-dir", str(tmp_path)]) == 0
    for relative in (gen_reasons.ENGINE_MODULE, gen_reasons.CLIENT_MODULE):
        committed = (gen_reasons.REPOSITORY / relative).read_text(encoding="utf-8")
        assert (tmp_path / relative).read_text(encoding="utf-8") == committed, f"{relative}: run make proto"
