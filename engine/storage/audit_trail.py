"""The audit trail's statements: append events to their users' chains, read them back a page at a
time. There is deliberately no update or delete here (and triggers refuse both; revision 0002).

Appending locks the user's chain head (``audit_chain_heads``) with an ``UPDATE ... RETURNING``,
which on PostgreSQL re-reads the newest committed head after waiting for its lock, so two engines
appending for one user take turns; ``(user_id, seq)`` is the primary key, so a fork is impossible
even if that were ever bypassed. SQLite serializes writers on its file lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, select, tuple_, update

from engine.domain.audit_events import GENESIS_HASH, AuditEvent, AuditOutcome, event_hash
from engine.domain.errors import require
from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import audit_chain_heads, audit_events

__all__ = [
    "MAX_EVENTS_PER_APPEND",
    "AuditCursor",
    "AuditFilter",
    "StoredAuditEvent",
    "append_audit_events",
    "event_from_row",
    "read_audit_events",
]

#: One append holds at most this many events (a bulk chunk's items; a lone request has one).
MAX_EVENTS_PER_APPEND = 10_000


@dataclass(frozen=True)
class StoredAuditEvent:
    event: AuditEvent
    hash: str


@dataclass(frozen=True)
class AuditFilter:
    """Which rows a listing reads: every field given must match; times are ``[from, until)``."""

    user_id: int | None = None
    order_id: str = ""
    charge_id: str = ""
    caller: str = ""
    from_us: int | None = None
    until_us: int | None = None


@dataclass(frozen=True)
class AuditCursor:
    """Where a page ended, in the listing's order (newest first): rows strictly after it follow."""

    at_us: int
    user_id: int
    seq: int


def _lock_head(connection: Connection, user_id: int) -> tuple[int, str]:
    """The user's chain head (last seq, last hash), locked until the transaction ends; the seq is
    already advanced by one (the caller writes that row). Creates the head on first use."""
    advance = (
        update(audit_chain_heads)
        .where(audit_chain_heads.c.user_id == user_id)
        .values(seq=audit_chain_heads.c.seq + 1)
        .returning(audit_chain_heads.c.seq, audit_chain_heads.c.hash)
    )
    for _ in range(2):  # the second pass finds the head the first created (or a rival did)
        row = connection.execute(advance).first()
        if row is not None:
            return int(row.seq), str(row.hash)
        insert_or_ignore(connection, audit_chain_heads, {"user_id": user_id, "seq": 0, "hash": GENESIS_HASH})
    raise AssertionError("the chain head exists after it was inserted")  # pragma: no cover


def append_audit_events(connection: Connection, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` (in order per user) to their users' chains, users in ascending order so
    two transactions lock the heads in one order and cannot deadlock on them."""
    require(len(events) <= MAX_EVENTS_PER_APPEND, "too many audit events in one append")
    by_user: dict[int, list[AuditEvent]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    rows: list[dict[str, Any]] = []
    for user_id in sorted(by_user):
        pending = by_user[user_id]
        seq, previous = _lock_head(connection, user_id)
        seq -= 1  # _lock_head advanced it by one; this append advances it by len(pending)
        for event in pending:
            seq += 1
            chained = dataclasses.replace(event, seq=seq, prev_hash=previous)
            previous = event_hash(chained)
            rows.append({**_columns(chained), "hash": previous})
        connection.execute(
            update(audit_chain_heads)
            .where(audit_chain_heads.c.user_id == user_id)
            .values(seq=seq, hash=previous)
        )
    if rows:
        connection.execute(audit_events.insert(), rows)


def _columns(event: AuditEvent) -> dict[str, Any]:
    values = dataclasses.asdict(event)
    values["outcome"] = event.outcome.value
    return values


def event_from_row(row: Row[Any]) -> StoredAuditEvent:
    return StoredAuditEvent(
        AuditEvent(
            user_id=int(row.user_id),
            at_us=int(row.at_us),
            caller=row.caller,
            role=row.role,
            rpc=row.rpc,
            idempotency_key=row.idempotency_key,
            request_digest=row.request_digest,
            outcome=AuditOutcome(row.outcome),
            reason=row.reason,
            merchant_id=row.merchant_id,
            order_id=row.order_id,
            charge_id=row.charge_id,
            transaction_id=row.transaction_id,
            amount=None if row.amount is None else int(row.amount),
            seq=int(row.seq),
            prev_hash=row.prev_hash,
        ),
        row.hash,
    )


def read_audit_events(
    connection: Connection,
    where: AuditFilter,
    *,
    limit: int,
    after: AuditCursor | None,
    include_cursor_row: bool = False,
) -> list[StoredAuditEvent]:
    """Up to ``limit`` rows matching ``where``, newest first (``at_us``, then user and seq, all
    descending), after ``after``; ``include_cursor_row`` also admits the row equal to it (the
    merge across shards breaks such ties by shard, engine.service.audit_trail)."""
    table = audit_events
    key = tuple_(table.c.at_us, table.c.user_id, table.c.seq)
    conditions = []
    if where.user_id is not None:
        conditions.append(table.c.user_id == where.user_id)
    if where.order_id:
        conditions.append(table.c.order_id == where.order_id)
    if where.charge_id:
        conditions.append(table.c.charge_id == where.charge_id)
    if where.caller:
        conditions.append(table.c.caller == where.caller)
    if where.from_us is not None:
        conditions.append(table.c.at_us >= where.from_us)
    if where.until_us is not None:
        conditions.append(table.c.at_us < where.until_us)
    if after is not None:
        bound = tuple_(after.at_us, after.user_id, after.seq)
        conditions.append(key <= bound if include_cursor_row else key < bound)
    statement = (
        select(table)
        .where(and_(True, *conditions))
        .order_by(table.c.at_us.desc(), table.c.user_id.desc(), table.c.seq.desc())
        .limit(limit)
    )
    return [event_from_row(row) for row in connection.execute(statement)]
