"""Every refusal the engine can give, named by its CONTRACT §4 reason.

The API layer maps :class:`CofferError` to a gRPC status with an ``ErrorInfo`` detail; nothing
else in the engine needs to know about gRPC.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Code(enum.Enum):
    """gRPC status codes used by the contract, by name (the domain does not import grpc)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"


class Reason(enum.Enum):
    """CONTRACT §4 reasons, each with the status code it travels under."""

    INVALID_ARGUMENT = ("INVALID_ARGUMENT", Code.INVALID_ARGUMENT)
    AMOUNT_LIMIT_EXCEEDED = ("AMOUNT_LIMIT_EXCEEDED", Code.INVALID_ARGUMENT)

    INSUFFICIENT_FUNDS = ("INSUFFICIENT_FUNDS", Code.FAILED_PRECONDITION)
    ACCOUNT_FROZEN = ("ACCOUNT_FROZEN", Code.FAILED_PRECONDITION)
    COUPON_EXPIRED = ("COUPON_EXPIRED", Code.FAILED_PRECONDITION)
    COUPON_NOT_ACTIVE = ("COUPON_NOT_ACTIVE", Code.FAILED_PRECONDITION)
    COUPON_ALREADY_USED = ("COUPON_ALREADY_USED", Code.FAILED_PRECONDITION)
    COUPON_FROZEN = ("COUPON_FROZEN", Code.FAILED_PRECONDITION)
    COUPON_NOT_APPLICABLE = ("COUPON_NOT_APPLICABLE", Code.FAILED_PRECONDITION)
    MIN_SPEND_NOT_MET = ("MIN_SPEND_NOT_MET", Code.FAILED_PRECONDITION)
    COUPONS_NOT_STACKABLE = ("COUPONS_NOT_STACKABLE", Code.FAILED_PRECONDITION)
    GIFT_CARD_INACTIVE = ("GIFT_CARD_INACTIVE", Code.FAILED_PRECONDITION)
    POINTS_LIMIT_EXCEEDED = ("POINTS_LIMIT_EXCEEDED", Code.FAILED_PRECONDITION)
    CAPTURE_EXCEEDS_AUTHORIZED = ("CAPTURE_EXCEEDS_AUTHORIZED", Code.FAILED_PRECONDITION)
    CHARGE_NOT_AUTHORIZED = ("CHARGE_NOT_AUTHORIZED", Code.FAILED_PRECONDITION)
    CHARGE_NOT_CAPTURED = ("CHARGE_NOT_CAPTURED", Code.FAILED_PRECONDITION)
    HOLD_EXPIRED = ("HOLD_EXPIRED", Code.FAILED_PRECONDITION)
    REFUND_EXCEEDS_CAPTURED = ("REFUND_EXCEEDS_CAPTURED", Code.FAILED_PRECONDITION)
    STEP_UP_REQUIRED = ("STEP_UP_REQUIRED", Code.FAILED_PRECONDITION)
    ACTIVITY_NOT_ELIGIBLE = ("ACTIVITY_NOT_ELIGIBLE", Code.FAILED_PRECONDITION)
    ILLEGAL_STATE_TRANSITION = ("ILLEGAL_STATE_TRANSITION", Code.FAILED_PRECONDITION)

    CHARGE_NOT_FOUND = ("CHARGE_NOT_FOUND", Code.NOT_FOUND)
    COUPON_NOT_FOUND = ("COUPON_NOT_FOUND", Code.NOT_FOUND)
    GIFT_CARD_NOT_FOUND = ("GIFT_CARD_NOT_FOUND", Code.NOT_FOUND)
    TEMPLATE_NOT_FOUND = ("TEMPLATE_NOT_FOUND", Code.NOT_FOUND)
    ACTIVITY_NOT_FOUND = ("ACTIVITY_NOT_FOUND", Code.NOT_FOUND)

    IDEMPOTENCY_KEY_REUSED = ("IDEMPOTENCY_KEY_REUSED", Code.ALREADY_EXISTS)
    CHANNEL_TXN_CONFLICT = ("CHANNEL_TXN_CONFLICT", Code.ALREADY_EXISTS)
    ORDER_ALREADY_CHARGED = ("ORDER_ALREADY_CHARGED", Code.ALREADY_EXISTS)
    ACTIVITY_ALREADY_GRANTED = ("ACTIVITY_ALREADY_GRANTED", Code.ALREADY_EXISTS)

    STOCK_EXHAUSTED = ("STOCK_EXHAUSTED", Code.RESOURCE_EXHAUSTED)
    CLAIM_LIMIT_REACHED = ("CLAIM_LIMIT_REACHED", Code.RESOURCE_EXHAUSTED)
    EXCHANGE_LIMIT_REACHED = ("EXCHANGE_LIMIT_REACHED", Code.RESOURCE_EXHAUSTED)
    RATE_LIMITED = ("RATE_LIMITED", Code.RESOURCE_EXHAUSTED)

    RISK_REJECTED = ("RISK_REJECTED", Code.PERMISSION_DENIED)
    ROLE_FORBIDDEN = ("ROLE_FORBIDDEN", Code.PERMISSION_DENIED)
    UNAUTHENTICATED = ("UNAUTHENTICATED", Code.UNAUTHENTICATED)

    IDEMPOTENCY_KEY_IN_USE = ("IDEMPOTENCY_KEY_IN_USE", Code.ABORTED)
    CONTENTION = ("CONTENTION", Code.ABORTED)

    STORAGE_UNAVAILABLE = ("STORAGE_UNAVAILABLE", Code.UNAVAILABLE)

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def code(self) -> Code:
        return self.value[1]


class CofferError(Exception):
    """A refusal with a contract reason; ``metadata`` names the offending field, asset or ids.

    ``field_violations`` maps a request field path to what is wrong with it and becomes a
    ``BadRequest`` detail on the wire.
    """

    def __init__(
        self,
        reason: Reason,
        message: str,
        metadata: Mapping[str, str] | None = None,
        field_violations: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: dict[str, str] = dict(field_violations or {})

    def __repr__(self) -> str:
        return f"CofferError({self.reason.label}, {self.message!r}, {self.metadata!r})"


def invalid_argument(field: str, problem: str) -> CofferError:
    """A bad field: INVALID_ARGUMENT with a BadRequest violation and ``field`` in the metadata."""
    return CofferError(
        Reason.INVALID_ARGUMENT,
        f"{field}: {problem}",
        metadata={"field": field},
        field_violations={field: problem},
    )


class InvariantViolation(Exception):
    """An internal invariant broke: a bug, never a user error. Raised by :func:`require`."""


def require(condition: bool, message: str) -> None:
    """Check an invariant explicitly (bare ``assert`` disappears under ``python -O``)."""
    if not condition:
        raise InvariantViolation(message)
