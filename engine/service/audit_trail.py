"""The audit trail's use cases: who is acting, the row a mutation writes, and ListAuditEvents.

The caller is authenticated in the gRPC call's task (engine.api.auth), but a use case runs on a
group-commit writer thread or the runner's pool, where that task's context variables are not
visible. So the runner captures the caller when it hands the work over and runs the work under
:func:`acting_as` (:func:`bound_to_caller`); :func:`engine.service.idempotent.execute_idempotent`
then records :func:`acting_caller` in the row it writes in the effect's own transaction (inside
the request's savepoint when batched: a refusal leaves no row, a replay writes none). Without
authentication (``COFFER_AUTH=none``) the caller is :data:`ANONYMOUS_CALLER` with role ``none``.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.domain.audit_events import ANONYMOUS_CALLER, NO_ROLE, AuditEvent
from engine.domain.errors import invalid_argument
from engine.domain.validation import require_user_id
from engine.security.identity import Caller
from engine.service.context import EngineContext
from engine.storage.audit_trail import (
    AuditCursor,
    AuditFilter,
    StoredAuditEvent,
    read_audit_events,
)
from engine.storage.database import read_only
from engine.storage.router import Shard

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "AuditEventPage",
    "AuditEventQuery",
    "ListedAuditEvent",
    "acting_as",
    "acting_caller",
    "bound_to_caller",
    "list_audit_events",
    "mutation_event",
]

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

_ACTING: ContextVar[Caller | None] = ContextVar("coffer_acting_caller", default=None)


def acting_caller() -> Caller | None:
    """The caller the current use case acts for; ``None`` without authentication."""
    return _ACTING.get()


@contextlib.contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    token = _ACTING.set(caller)
    try:
        yield
    finally:
        _ACTING.reset(token)


def bound_to_caller(caller: Caller | None, work: Callable[[], T]) -> Callable[[], T]:
    """``work`` to run on another thread, acting for ``caller`` there."""

    def run() -> T:
        with acting_as(caller):
            return work()

    return run


def _text(sources: tuple[object, ...], name: str) -> str:
    """The first non-empty string attribute ``name`` of ``sources`` (commands and results name
    their ids alike: ``order_id``, ``charge_id``, ``transaction_id``, ``merchant_id``)."""
    for source in sources:
        value = getattr(source, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


#: Where a request carries its amount, in the order looked at: a charge, capture, refund or
#: adjustment names ``amount``; an Issue or Redeem names it in its ``spec`` (top-up, gift card,
#: coupon-code order amount, points, coins).
_AMOUNT_FIELDS = ("amount", "order_amount", "points", "coins")


def _amount(sources: tuple[object, ...]) -> int | None:
    for source in sources:
        for name in _AMOUNT_FIELDS:
            value = getattr(source, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def mutation_event(
    user_id: int,
    now_us: int,
    operation: str,
    key: str,
    digest: str,
    command: Any,
    result: Any,
) -> AuditEvent:
    """The acknowledged mutation's row: who (the acting caller), what (the operation, key and
    request digest), and the ids and amount it concerns, from the command and its result."""
    caller = acting_caller()
    spec = getattr(command, "spec", None)
    requested = (command, spec)
    # What the mutation created: a refund, or a ledger transaction (not the charge's own one,
    # which a Capture or Void answer carries in its charge).
    created = (result, getattr(result, "transaction", None))
    concerned = (*requested, *created, getattr(result, "charge", None))
    merchant = _text(requested, "merchant_id") or (caller.merchant_id if caller is not None else "") or ""
    return AuditEvent(
        user_id=user_id,
        at_us=now_us,
        caller=caller.name if caller is not None else ANONYMOUS_CALLER,
        role=caller.role.value if caller is not None else NO_ROLE,
        rpc=operation,
        idempotency_key=key,
        request_digest=digest,
        merchant_id=merchant,
        order_id=_text(concerned, "order_id"),
        charge_id=_text(concerned, "charge_id"),
        transaction_id=_text(created, "refund_id") or _text(created, "transaction_id"),
        amount=_amount(requested),
    )


@dataclass(frozen=True)
class AuditEventQuery:
    """ListAuditEvents: one of user, order, charge or caller (or none: every row), a time range
    ``[from_us, until_us)``, a page."""

    where: AuditFilter
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ListedAuditEvent:
    shard: int
    stored: StoredAuditEvent


@dataclass(frozen=True)
class AuditEventPage:
    events: tuple[ListedAuditEvent, ...]
    next_page_token: str


@dataclass(frozen=True)
class _Token:
    cursor: AuditCursor
    shard: int


def _encode_token(listed: ListedAuditEvent) -> str:
    event = listed.stored.event
    raw = f"{event.at_us}:{event.user_id}:{event.seq}:{listed.shard}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_token(token: str) -> _Token:
    try:
        at_us, user_id, seq, shard = (
            int(part) for part in base64.urlsafe_b64decode(token.encode()).decode().split(":")
        )
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid_argument("page_token", "is not a token this engine issued") from error
    return _Token(AuditCursor(at_us, user_id, seq), shard)


def _shards_for(context: EngineContext, where: AuditFilter) -> tuple[Shard, ...]:
    """By user or charge: that one shard (the id names it). By order or caller: every shard."""
    if where.user_id is not None:
        return (context.router.for_user(require_user_id(where.user_id)),)
    if where.charge_id:
        shard = context.router.for_id(where.charge_id)
        return () if shard is None else (shard,)
    return tuple(context.router.shards)


def _sort_key(listed: ListedAuditEvent) -> tuple[int, int, int, int]:
    event = listed.stored.event
    return (-event.at_us, -event.user_id, -event.seq, -listed.shard)


def list_audit_events(context: EngineContext, query: AuditEventQuery) -> AuditEventPage:
    """Newest first across the shards asked: each gives at most one page past the token, the
    pages are merged and cut, so one call reads at most (page size + 1) × shards rows."""
    if not 0 <= query.page_size <= MAX_PAGE_SIZE:
        raise invalid_argument("page_size", f"must be within 0..{MAX_PAGE_SIZE}")
    where = query.where
    if where.from_us is not None and where.until_us is not None and where.until_us < where.from_us:
        raise invalid_argument("until", "must not be before from")
    size = query.page_size or DEFAULT_PAGE_SIZE
    token = _decode_token(query.page_token) if query.page_token else None
    pages: list[list[ListedAuditEvent]] = []
    for shard in _shards_for(context, where):
        with read_only(shard.engine) as connection:
            rows = read_audit_events(
                connection,
                where,
                limit=size + 1,
                after=None if token is None else token.cursor,
                # Rows equal to the cursor on a lower-numbered shard come after it in the order.
                include_cursor_row=token is not None and shard.index < token.shard,
            )
        pages.append([ListedAuditEvent(shard.index, stored) for stored in rows])
    merged = list(heapq.merge(*pages, key=_sort_key))
    page = tuple(merged[:size])
    next_token = _encode_token(page[-1]) if len(merged) > size else ""
    return AuditEventPage(page, next_token)
