"""Every refusal the engine can give, named by its CONTRACT §4 reason.

The reasons and their status codes are declared once, as ``ErrorReason`` in
protos/coffer/v1/common.proto; :mod:`engine.domain.reasons` is generated from it and re-exported
here. The API layer maps :class:`CofferError` to a gRPC status with an ``ErrorInfo`` detail;
nothing else in the engine needs to know about gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.domain.reasons import Code, Reason

__all__ = [
    "Code",
    "CofferError",
    "InvariantViolation",
    "Reason",
    "invalid_argument",
    "require",
]


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
