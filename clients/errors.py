"""Typed exceptions for every refusal the engine can give (CONTRACT §1 "Errors", §4).

The engine attaches a ``google.rpc.ErrorInfo`` detail (``domain = "coffer"``) to every refusal;
:func:`from_rpc_error` parses it with grpcio-status and raises the subclass registered for its
``reason``. Each class also derives from the class of its gRPC code, so a caller can catch broadly
(``except FailedPreconditionError``) or exactly (``except InsufficientFunds``).

Statuses that carry no ErrorInfo (the transport failing, a deadline passing, an internal error)
become the code's class itself with ``reason`` set to the code name (``"UNAVAILABLE"``,
``"DEADLINE_EXCEEDED"``, ``"INTERNAL"``), so ``.reason`` is always a string a program can branch on.

This module imports only grpcio, grpcio-status and protobuf (the ``client`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "coffer"

#: The codes a client retries (with the same idempotency key): the call may not have run, or may
#: have run and its answer was lost; either way the key makes a re-send safe.
RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)


class CofferError(Exception):
    """A refused or failed call.

    ``reason`` is the CONTRACT §4 reason (or the status code name when the status carried no
    ErrorInfo), ``metadata`` the ErrorInfo metadata (the offending ``field``, ``asset``, ids),
    ``code`` the gRPC status code, ``field_violations`` the BadRequest detail as a mapping.
    """

    #: Set on the classes that stand for one reason.
    reason_name: ClassVar[str] = ""
    #: Set on the classes that stand for one gRPC code.
    status_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        code: grpc.StatusCode,
        metadata: Mapping[str, str] | None = None,
        field_violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
        self.code = code
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: dict[str, str] = dict(field_violations or {})

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(reason={self.reason!r}, code={self.code.name}, metadata={self.metadata!r})"


#: reason -> class, filled by :func:`_register_reason`.
REASON_CLASSES: dict[str, type[CofferError]] = {}
#: gRPC code -> the class standing for that code.
CODE_CLASSES: dict[grpc.StatusCode, type[CofferError]] = {}


# One class per gRPC code. Declared as plain classes so type checkers and IDEs see them.
class InvalidArgumentError(CofferError):
    """INVALID_ARGUMENT: the request itself is wrong; re-sending it will not help."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPreconditionError(CofferError):
    """FAILED_PRECONDITION: the state does not allow it (funds, coupon state, charge status)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class NotFoundError(CofferError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(CofferError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhaustedError(CofferError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDeniedError(CofferError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(CofferError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class AbortedError(CofferError):
    """ABORTED: contention or the same key in flight; retried by the client with the same key."""

    status_code = grpc.StatusCode.ABORTED


class UnavailableError(CofferError):
    """UNAVAILABLE: the engine or its storage cannot be reached; retried with the same key."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(CofferError):
    """DEADLINE_EXCEEDED: no answer in time; the effect may or may not have happened."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(CofferError):
    status_code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(CofferError):
    """INTERNAL / UNKNOWN / DATA_LOSS: a bug on the engine's side (nothing was applied)."""

    status_code = grpc.StatusCode.INTERNAL


class CancelledError(CofferError):
    status_code = grpc.StatusCode.CANCELLED


for _cls in (
    InvalidArgumentError,
    FailedPreconditionError,
    NotFoundError,
    AlreadyExistsError,
    ResourceExhaustedError,
    PermissionDeniedError,
    UnauthenticatedError,
    AbortedError,
    UnavailableError,
    DeadlineExceededError,
    UnimplementedError,
    InternalError,
    CancelledError,
):
    assert _cls.status_code is not None
    CODE_CLASSES[_cls.status_code] = _cls
CODE_CLASSES[grpc.StatusCode.UNKNOWN] = InternalError
CODE_CLASSES[grpc.StatusCode.DATA_LOSS] = InternalError
CODE_CLASSES[grpc.StatusCode.OUT_OF_RANGE] = InvalidArgumentError


def _register_reason(cls: type[CofferError]) -> type[CofferError]:
    REASON_CLASSES[cls.reason_name] = cls
    return cls


# One class per CONTRACT §4 reason, under the class of the code it travels with.
@_register_reason
class InvalidArgument(InvalidArgumentError):
    reason_name = "INVALID_ARGUMENT"


@_register_reason
class AmountLimitExceeded(InvalidArgumentError):
    reason_name = "AMOUNT_LIMIT_EXCEEDED"


@_register_reason
class InsufficientFunds(FailedPreconditionError):
    """Too few points, coins, cash or gift-card balance; ``metadata["asset"]`` says which."""

    reason_name = "INSUFFICIENT_FUNDS"


@_register_reason
class AccountFrozen(FailedPreconditionError):
    reason_name = "ACCOUNT_FROZEN"


@_register_reason
class CouponExpired(FailedPreconditionError):
    reason_name = "COUPON_EXPIRED"


@_register_reason
class CouponNotActive(FailedPreconditionError):
    reason_name = "COUPON_NOT_ACTIVE"


@_register_reason
class CouponAlreadyUsed(FailedPreconditionError):
    reason_name = "COUPON_ALREADY_USED"


@_register_reason
class CouponFrozen(FailedPreconditionError):
    reason_name = "COUPON_FROZEN"


@_register_reason
class CouponNotApplicable(FailedPreconditionError):
    reason_name = "COUPON_NOT_APPLICABLE"


@_register_reason
class MinSpendNotMet(FailedPreconditionError):
    reason_name = "MIN_SPEND_NOT_MET"


@_register_reason
class CouponsNotStackable(FailedPreconditionError):
    reason_name = "COUPONS_NOT_STACKABLE"


@_register_reason
class GiftCardInactive(FailedPreconditionError):
    reason_name = "GIFT_CARD_INACTIVE"


@_register_reason
class PointsLimitExceeded(FailedPreconditionError):
    reason_name = "POINTS_LIMIT_EXCEEDED"


@_register_reason
class CaptureExceedsAuthorized(FailedPreconditionError):
    reason_name = "CAPTURE_EXCEEDS_AUTHORIZED"


@_register_reason
class ChargeNotAuthorized(FailedPreconditionError):
    reason_name = "CHARGE_NOT_AUTHORIZED"


@_register_reason
class ChargeNotCaptured(FailedPreconditionError):
    reason_name = "CHARGE_NOT_CAPTURED"


@_register_reason
class HoldExpired(FailedPreconditionError):
    reason_name = "HOLD_EXPIRED"


@_register_reason
class RefundExceedsCaptured(FailedPreconditionError):
    reason_name = "REFUND_EXCEEDS_CAPTURED"


@_register_reason
class StepUpRequired(FailedPreconditionError):
    reason_name = "STEP_UP_REQUIRED"


@_register_reason
class ActivityNotEligible(FailedPreconditionError):
    reason_name = "ACTIVITY_NOT_ELIGIBLE"


@_register_reason
class IllegalStateTransition(FailedPreconditionError):
    reason_name = "ILLEGAL_STATE_TRANSITION"


@_register_reason
class ChargeNotFound(NotFoundError):
    reason_name = "CHARGE_NOT_FOUND"


@_register_reason
class CouponNotFound(NotFoundError):
    reason_name = "COUPON_NOT_FOUND"


@_register_reason
class GiftCardNotFound(NotFoundError):
    reason_name = "GIFT_CARD_NOT_FOUND"


@_register_reason
class TemplateNotFound(NotFoundError):
    reason_name = "TEMPLATE_NOT_FOUND"


@_register_reason
class ActivityNotFound(NotFoundError):
    reason_name = "ACTIVITY_NOT_FOUND"


@_register_reason
class IdempotencyKeyReused(AlreadyExistsError):
    """The key was used before with a different payload: pick a new key for a new request."""

    reason_name = "IDEMPOTENCY_KEY_REUSED"


@_register_reason
class ChannelTxnConflict(AlreadyExistsError):
    reason_name = "CHANNEL_TXN_CONFLICT"


@_register_reason
class OrderAlreadyCharged(AlreadyExistsError):
    reason_name = "ORDER_ALREADY_CHARGED"


@_register_reason
class ActivityAlreadyGranted(AlreadyExistsError):
    reason_name = "ACTIVITY_ALREADY_GRANTED"


@_register_reason
class StockExhausted(ResourceExhaustedError):
    reason_name = "STOCK_EXHAUSTED"


@_register_reason
class ClaimLimitReached(ResourceExhaustedError):
    reason_name = "CLAIM_LIMIT_REACHED"


@_register_reason
class ExchangeLimitReached(ResourceExhaustedError):
    reason_name = "EXCHANGE_LIMIT_REACHED"


@_register_reason
class RateLimited(ResourceExhaustedError):
    reason_name = "RATE_LIMITED"


@_register_reason
class RiskRejected(PermissionDeniedError):
    reason_name = "RISK_REJECTED"


@_register_reason
class RoleForbidden(PermissionDeniedError):
    reason_name = "ROLE_FORBIDDEN"


@_register_reason
class Unauthenticated(UnauthenticatedError):
    reason_name = "UNAUTHENTICATED"


@_register_reason
class IdempotencyKeyInUse(AbortedError):
    reason_name = "IDEMPOTENCY_KEY_IN_USE"


@_register_reason
class Contention(AbortedError):
    reason_name = "CONTENTION"


@_register_reason
class StorageUnavailable(UnavailableError):
    reason_name = "STORAGE_UNAVAILABLE"


@_register_reason
class NotImplementedYet(UnimplementedError):
    """The engine knows the RPC but does not serve it yet (reason ``NOT_IMPLEMENTED``)."""

    reason_name = "NOT_IMPLEMENTED"


def error_class(reason: str, code: grpc.StatusCode) -> type[CofferError]:
    """The class for a reason; an unknown reason (a newer engine) falls back to its code's class."""
    cls = REASON_CLASSES.get(reason)
    if cls is not None:
        return cls
    return CODE_CLASSES.get(code, CofferError)


def _details(error: Any) -> tuple[str | None, dict[str, str], dict[str, str]]:
    """(reason, metadata, field violations) from the rich status, when there is one."""
    try:
        status = rpc_status.from_call(error)
    except (ValueError, AttributeError, TypeError):
        return None, {}, {}
    if status is None:
        return None, {}, {}
    reason: str | None = None
    metadata: dict[str, str] = {}
    violations: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                reason = info.reason
                metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.update({item.field: item.description for item in bad_request.field_violations})
    return reason, metadata, violations


def from_rpc_error(error: grpc.RpcError) -> CofferError:
    """The typed exception for a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code_method = getattr(error, "code", None)
    code: grpc.StatusCode = code_method() if callable(code_method) else grpc.StatusCode.UNKNOWN
    details_method = getattr(error, "details", None)
    message = (details_method() if callable(details_method) else "") or ""
    reason, metadata, violations = _details(error)
    if reason is None:
        reason = code.name
    cls = error_class(reason, code)
    return cls(reason, message, code=code, metadata=metadata, field_violations=violations)


__all__ = [
    "CODE_CLASSES",
    "ERROR_DOMAIN",
    "REASON_CLASSES",
    "RETRYABLE_CODES",
    "AbortedError",
    "AccountFrozen",
    "ActivityAlreadyGranted",
    "ActivityNotEligible",
    "ActivityNotFound",
    "AlreadyExistsError",
    "AmountLimitExceeded",
    "CancelledError",
    "CaptureExceedsAuthorized",
    "ChannelTxnConflict",
    "ChargeNotAuthorized",
    "ChargeNotCaptured",
    "ChargeNotFound",
    "ClaimLimitReached",
    "CofferError",
    "Contention",
    "CouponAlreadyUsed",
    "CouponExpired",
    "CouponFrozen",
    "CouponNotActive",
    "CouponNotApplicable",
    "CouponNotFound",
    "CouponsNotStackable",
    "DeadlineExceededError",
    "ExchangeLimitReached",
    "FailedPreconditionError",
    "GiftCardInactive",
    "GiftCardNotFound",
    "HoldExpired",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "IllegalStateTransition",
    "InsufficientFunds",
    "InternalError",
    "InvalidArgument",
    "InvalidArgumentError",
    "MinSpendNotMet",
    "NotFoundError",
    "NotImplementedYet",
    "OrderAlreadyCharged",
    "PermissionDeniedError",
    "PointsLimitExceeded",
    "RateLimited",
    "RefundExceedsCaptured",
    "ResourceExhaustedError",
    "RiskRejected",
    "RoleForbidden",
    "StepUpRequired",
    "StockExhausted",
    "StorageUnavailable",
    "TemplateNotFound",
    "Unauthenticated",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "error_class",
    "from_rpc_error",
]
