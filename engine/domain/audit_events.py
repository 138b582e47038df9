"""The audit trail's rows and their hash chain (CONTRACT §3 Audit; docs/security.md "Audit trail").

One :class:`AuditEvent` per acknowledged mutation, chained per user: ``seq`` counts the user's
events from 1 and ``prev_hash`` is the hash of the user's event ``seq - 1`` (:data:`GENESIS_HASH`
before the first). :func:`event_hash` is the one definition of a row's hash, used by the writer
and by the verifier alike. Requests that concern no user (a coupon template, an activity) chain
under :data:`SYSTEM_CHAIN_USER_ID` on the shard that ran them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ANONYMOUS_CALLER",
    "AUDIT_EVENT_FIELDS",
    "GENESIS_HASH",
    "NO_ROLE",
    "SYSTEM_CHAIN_USER_ID",
    "AuditEvent",
    "AuditOutcome",
    "BrokenChain",
    "content_hash",
    "event_content",
    "event_hash",
]

#: The chain of requests that name no user (Admin CreateCouponTemplate, CreateActivity), per shard.
SYSTEM_CHAIN_USER_ID = 0
#: ``prev_hash`` of a chain's first event.
GENESIS_HASH = "0" * 64
#: Who is recorded when the engine runs without authentication (``COFFER_AUTH=none``, loopback).
ANONYMOUS_CALLER = "anonymous"
NO_ROLE = "none"


class AuditOutcome(StrEnum):
    """What became of the request. Only acknowledged mutations are recorded today; a risk
    rejection (a later issue) will be recorded as ``REJECTED`` with its reason."""

    OK = "ok"
    REJECTED = "rejected"


@dataclass(frozen=True)
class AuditEvent:
    """One audit row's content: everything :func:`event_hash` covers.

    ``seq`` and ``prev_hash`` are given by the storage adapter when it appends the event to its
    user's chain; a use case builds the event with the defaults."""

    user_id: int
    at_us: int
    caller: str
    role: str
    rpc: str
    idempotency_key: str
    request_digest: str
    outcome: AuditOutcome = AuditOutcome.OK
    reason: str = ""
    merchant_id: str = ""
    order_id: str = ""
    charge_id: str = ""
    transaction_id: str = ""
    amount: int | None = None
    seq: int = 0
    prev_hash: str = GENESIS_HASH


#: The columns of an audit row other than its hash, in declaration order.
AUDIT_EVENT_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(AuditEvent))


def event_content(event: AuditEvent) -> dict[str, Any]:
    """The event as plain values (the outcome as its string), one per field: what is stored and
    what is hashed. (A flat read of the fields: ``dataclasses.asdict`` gives the same dict at
    several times the cost, and a campaign chunk hashes thousands of events.)"""
    content = {name: getattr(event, name) for name in AUDIT_EVENT_FIELDS}
    content["outcome"] = event.outcome.value
    return content


def content_hash(content: dict[str, Any]) -> str:
    """sha256 (hex) over the canonical JSON of :func:`event_content`."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_hash(event: AuditEvent) -> str:
    """sha256 (hex) over the canonical JSON of every field, ``prev_hash`` included, so editing
    any field of a row, or removing or reordering rows, breaks the chain from there on."""
    return content_hash(event_content(event))


@dataclass(frozen=True)
class BrokenChain:
    """The first broken link of one user's chain: the row at ``seq`` (or the chain head) and why."""

    user_id: int
    seq: int
    problem: str
