"""Typed exceptions for every refusal the engine can give (CONTRACT §1 "Errors", §4).

The engine attaches a ``google.rpc.ErrorInfo`` detail (``domain = "coffer"``) to every refusal;
:func:`from_rpc_error` parses it with grpcio-status and raises the subclass registered for its
``reason``. Each class also derives from the class of its gRPC code, so a caller can catch broadly
(``except FailedPreconditionError``) or exactly (``except InsufficientFunds``).

Statuses that carry no ErrorInfo (the transport failing, a deadline passing, an internal error)
become the code's class itself with ``reason`` set to the code name (``"UNAVAILABLE"``,
``"DEADLINE_EXCEEDED"``, ``"INTERNAL"``), so ``.reason`` is always a string a program can branch on.

The per-reason classes are generated from the ``ErrorReason`` enum in ``common.proto``
(``clients/_reason_errors.py``, by ``scripts/gen_reasons.py``), so they are never a second list;
``CofferError.error_reason`` gives the reason as that enum.

This module imports only grpcio, grpcio-status and protobuf (the ``client`` extra).
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from clients import _reason_errors
from clients._reason_errors import *  # noqa: F403  (the generated per-reason classes, re-exported)
from clients._reason_errors import REASON_CLASSES
from clients._status_errors import (
    CODE_CLASSES,
    ERROR_DOMAIN,
    RETRYABLE_CODES,
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    CofferError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)


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
    "RETRYABLE_CODES",
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "CofferError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "error_class",
    "from_rpc_error",
]
__all__ += _reason_errors.__all__
