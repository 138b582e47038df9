"""Who is calling: a caller name, one role, and for a till the merchant it is bound to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from engine.domain.errors import CofferError, Reason

__all__ = [
    "MAX_CALLER_CHARS",
    "MERCHANT_URI_PREFIX",
    "Caller",
    "Role",
    "merchant_from_uri",
    "merchant_uri",
    "role_named",
    "unauthenticated",
]

#: A caller name (certificate CN or token ``sub``) longer than this is refused.
MAX_CALLER_CHARS = 128
#: A POS certificate names its merchant in a subjectAltName URI ``coffer:merchant:<merchant_id>``.
MERCHANT_URI_PREFIX = "coffer:merchant:"


class Role(StrEnum):
    """CONTRACT §3: what a caller may do is decided by its role alone (and a till's merchant)."""

    ORDER_SERVICE = "order_service"
    POS = "pos"
    PAYMENT_CALLBACK = "payment_callback"
    OPS = "ops"
    AUDITOR = "auditor"


#: Roles whose credentials must name a merchant: a till acts for exactly one.
MERCHANT_BOUND_ROLES = frozenset({Role.POS})


def unauthenticated(problem: str) -> CofferError:
    """No or bad credentials. The message is for the caller's logs; it never echoes a secret."""
    return CofferError(Reason.UNAUTHENTICATED, f"no valid caller identity: {problem}")


def role_named(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise unauthenticated(f"unknown role {name[:40]!r}") from None


def merchant_uri(merchant_id: str) -> str:
    return f"{MERCHANT_URI_PREFIX}{merchant_id}"


def merchant_from_uri(uri: str) -> str | None:
    """The merchant a ``coffer:merchant:<id>`` URI names, ``None`` for any other URI."""
    if not uri.startswith(MERCHANT_URI_PREFIX):
        return None
    return uri[len(MERCHANT_URI_PREFIX) :] or None


@dataclass(frozen=True)
class Caller:
    """A verified caller. ``merchant_id`` set: every merchant the caller's requests name must be it."""

    name: str
    role: Role
    merchant_id: str | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > MAX_CALLER_CHARS:
            raise unauthenticated(f"the caller name must be 1..{MAX_CALLER_CHARS} characters")
        if self.role in MERCHANT_BOUND_ROLES and not self.merchant_id:
            raise unauthenticated(f"a {self.role} credential must name its merchant")
