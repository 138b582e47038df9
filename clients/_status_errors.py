"""The exception base and one class per gRPC status code (the part of :mod:`clients.errors` that
is about gRPC, not about coffer's reasons; the per-reason classes in ``clients._reason_errors`` are
generated from the protos and derive from these).

Imports only grpcio and the generated stubs (the ``client`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

import grpc

from coffer.v1 import common_pb2

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
    def error_reason(self) -> common_pb2.ErrorReason.ValueType:
        """``reason`` as the proto enum; ``ERROR_REASON_UNSPECIFIED`` when it is not one (a status
        without ErrorInfo, or a reason from an engine newer than these stubs)."""
        try:
            return common_pb2.ErrorReason.Value(self.reason)
        except ValueError:
            return common_pb2.ERROR_REASON_UNSPECIFIED

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_CODES

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(reason={self.reason!r}, code={self.code.name}, metadata={self.metadata!r})"


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


_CODE_CLASS_LIST: tuple[type[CofferError], ...] = (
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
)

#: gRPC code -> the class standing for that code (the codes without a class of their own are folded
#: into the nearest one).
CODE_CLASSES: Final[Mapping[grpc.StatusCode, type[CofferError]]] = MappingProxyType(
    {
        **{cls.status_code: cls for cls in _CODE_CLASS_LIST if cls.status_code is not None},
        grpc.StatusCode.UNKNOWN: InternalError,
        grpc.StatusCode.DATA_LOSS: InternalError,
        grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    }
)
