"""The audit trail's statements: append events to their users' chains, read them back a page at a
time. There is deliberately no update or delete here (and triggers refuse both; revision 0002).

Appending locks the users' chain heads (``audit_chain_heads``) with one ``SELECT ... FOR UPDATE``
in user order, which on PostgreSQL re-reads the newest committed head after waiting for its lock,
so two engines appending for one user take turns; ``(user_id, seq)`` is the primary key, so a
fork is impossible even if that were ever bypassed. SQLite serializes writers on its file lock.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, select, text, tuple_

from engine.domain.audit_events import (
    AUDIT_EVENT_FIELDS,
    GENESIS_HASH,
    AuditEvent,
    AuditOutcome,
    content_hash,
    event_content,
)
from engine.domain.errors import require
from engine.storage.bulk import (
    array_literal,
    insert_rows,
    insert_rows_query,
    is_postgresql,
    pg_arrays,
    unnest_select,
    user_in_dialect,
    users_parameter,
)
from engine.storage.pipeline import Query, run_pipelined, write
from engine.storage.schema import audit_chain_heads, audit_events

__all__ = [
    "MAX_EVENTS_PER_APPEND",
    "AuditCursor",
    "AuditFilter",
    "ChainHeads",
    "StoredAuditEvent",
    "append_audit_events",
    "append_queries",
    "event_from_row",
    "lock_heads_queries",
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


@functools.cache
def _heads_for_update_statement(dialect_name: str) -> Any:
    """Built once per dialect: the chain heads of a set of users, locked in user order."""
    return (
        select(audit_chain_heads.c.user_id, audit_chain_heads.c.seq, audit_chain_heads.c.hash)
        .where(user_in_dialect(dialect_name, audit_chain_heads.c.user_id, "p_users"))
        .order_by(audit_chain_heads.c.user_id)
        .with_for_update()
    )


#: Move each head to its chain's new last row (seq and hash): PostgreSQL from arrays, SQLite one
#: row per tuple of the driver's executemany.
_PG_ADVANCE_HEADS = text(
    "UPDATE audit_chain_heads AS h SET seq = rows.seq, hash = rows.hash "
    f"FROM ({unnest_select(audit_chain_heads, ('user_id', 'seq', 'hash'))}) AS rows "
    "WHERE h.user_id = rows.user_id"
)
_SQLITE_ADVANCE_HEADS = "UPDATE audit_chain_heads SET seq = ?, hash = ? WHERE user_id = ?"


def _read_heads_for_update(connection: Connection, user_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """The heads (last seq, last hash) of those of ``user_ids`` (ascending) that have one. On
    PostgreSQL a head another transaction holds is waited for, then read as it was committed
    (READ COMMITTED re-reads a row it had to wait for)."""
    rows = connection.execute(
        _heads_for_update_statement(connection.dialect.name),
        {"p_users": users_parameter(connection, user_ids)},
    )
    return {int(row.user_id): (int(row.seq), str(row.hash)) for row in rows}


def _lock_heads(connection: Connection, user_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """The chain heads of ``user_ids`` (ascending), locked until the transaction ends; the heads
    missing are created first (seq 0, the genesis hash). One statement when every head exists."""
    heads = _read_heads_for_update(connection, user_ids)
    missing = [user_id for user_id in user_ids if user_id not in heads]
    if missing:
        # ON CONFLICT DO NOTHING: a rival transaction may create the same head; ours then waits
        # for it and the second read finds the head as the rival left it.
        insert_rows(
            connection,
            audit_chain_heads,
            {"user_id": missing, "seq": [0] * len(missing), "hash": [GENESIS_HASH] * len(missing)},
            ignore_conflicts=True,
        )
        heads.update(_read_heads_for_update(connection, missing))
    absent = [user_id for user_id in user_ids if user_id not in heads]
    require(not absent, f"audit chain heads missing after they were inserted: {absent[:5]}")
    return heads


def _advance_heads(connection: Connection, heads: dict[int, tuple[int, str]]) -> None:
    users = sorted(heads)
    if is_postgresql(connection):
        connection.execute(
            _PG_ADVANCE_HEADS,
            pg_arrays(
                {
                    "user_id": users,
                    "seq": [heads[user][0] for user in users],
                    "hash": [heads[user][1] for user in users],
                }
            ),
        )
        return
    # The driver's executemany over tuples: no per-row parameter dicts (engine.storage.bulk.insert_rows).
    connection.exec_driver_sql(
        _SQLITE_ADVANCE_HEADS, [(heads[user][0], heads[user][1], user) for user in users]
    )


#: Each user's chain head as this transaction locked it: ``{user_id: (seq, hash)}``.
ChainHeads = dict[int, tuple[int, str]]


def append_audit_events(connection: Connection, events: Sequence[AuditEvent]) -> None:
    """Append ``events`` (in order per user) to their users' chains: the heads locked in
    ascending user order (so two transactions cannot deadlock on them), the rows written and the
    heads advanced with one statement each, whatever the number of events. On PostgreSQL in two
    round trips (engine.storage.pipeline): the heads, then the rows and the heads' new values."""
    require(len(events) <= MAX_EVENTS_PER_APPEND, "too many audit events in one append")
    if not events:
        return
    users = sorted({event.user_id for event in events})
    if is_postgresql(connection):
        heads = run_pipelined(connection, lock_heads_queries(users))[-1]
        run_pipelined(connection, append_queries(events, heads))
        return
    rows, advanced = _chained(events, _lock_heads(connection, users))
    insert_rows(connection, audit_events, rows)
    _advance_heads(connection, advanced)


def lock_heads_queries(users: Sequence[int]) -> list[Query[Any]]:
    """The chain heads of ``users`` (ascending) created where missing (seq 0, the genesis hash;
    a rival creating the same head makes ours wait for it) and then locked and read, as the
    statements of a pipeline (PostgreSQL); the last one's answer is ``{user: (seq, hash)}``."""
    require(list(users) == sorted(set(users)), "heads are locked in ascending user order")
    create = insert_rows_query(
        audit_chain_heads,
        {"user_id": list(users), "seq": [0] * len(users), "hash": [GENESIS_HASH] * len(users)},
        ignore_conflicts=True,
    )
    read = Query(
        _heads_for_update_statement("postgresql"),
        {"p_users": array_literal(list(users))},
        lambda answer: _heads_of(users, answer[0]),
    )
    return [create, read]


def append_queries(events: Sequence[AuditEvent], heads: dict[int, tuple[int, str]]) -> list[Query[None]]:
    """``events`` chained after ``heads`` (as :func:`lock_heads_queries` read them): the rows and
    the heads' new values, as two statements of a pipeline (PostgreSQL)."""
    rows, advanced = _chained(events, heads)
    users = sorted(advanced)
    return [
        insert_rows_query(audit_events, rows),
        write(
            _PG_ADVANCE_HEADS,
            pg_arrays(
                {
                    "user_id": users,
                    "seq": [advanced[user][0] for user in users],
                    "hash": [advanced[user][1] for user in users],
                }
            ),
        ),
    ]


def _heads_of(users: Sequence[int], rows: Sequence[Any]) -> dict[int, tuple[int, str]]:
    heads = {int(row.user_id): (int(row.seq), str(row.hash)) for row in rows}
    absent = [user_id for user_id in users if user_id not in heads]
    require(not absent, f"audit chain heads missing after they were inserted: {absent[:5]}")
    return heads


def _chained(
    events: Sequence[AuditEvent], heads: dict[int, tuple[int, str]]
) -> tuple[dict[str, list[Any]], dict[int, tuple[int, str]]]:
    """Each event after its user's head (and the one before it in ``events``): the rows to
    insert, and where each chain then ends."""
    heads = dict(heads)
    rows: dict[str, list[Any]] = {name: [] for name in (*AUDIT_EVENT_FIELDS, "hash")}
    for event in events:
        seq, previous = heads[event.user_id]
        chained = dataclasses.replace(event, seq=seq + 1, prev_hash=previous)
        content = event_content(chained)
        digest = content_hash(content)
        for name, value in content.items():
            rows[name].append(value)
        rows["hash"].append(digest)
        heads[event.user_id] = (seq + 1, digest)
    return rows, heads


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
