"""A mutation's last two rows: its stored answer (on its idempotency key) and its audit row.

Both are written once the effect is known, in the effect's transaction, and nothing in that
transaction reads them back except a replay of the same key. A lone request writes its own at
once; a group-commit batch (:class:`engine.storage.unit_of_work.BatchTransaction`) collects those
of the requests whose savepoint it kept and writes them all just before its COMMIT, one
statement per table, so a batch of 64 charges costs four statements here instead of 256.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, text

from engine.domain.errors import require
from engine.storage.audit_trail import append_audit_events, append_queries, lock_heads_queries
from engine.storage.bulk import is_postgresql
from engine.storage.idempotency import store_responses, store_responses_query
from engine.storage.pipeline import Query, run_pipelined, write
from engine.storage.unit_of_work import RequestOutcome

__all__ = ["RequestOutcome", "write_outcomes"]


#: Sent with a batch's last statements (``commit``), saving the round trip of its own.
_COMMIT = text("COMMIT")


def write_outcomes(
    connection: Connection,
    outcomes: Sequence[RequestOutcome],
    *,
    commit: bool = False,
    locked_heads: Mapping[int, tuple[int, str]] | None = None,
    first: Sequence[Query[Any]] = (),
) -> None:
    """Store every answer on its key and append every audit row to its user's chain (in the
    order given, which is each user's order of requests). With ``commit`` (a group-commit
    batch's last writes) PostgreSQL's COMMIT is sent in the same round trip as the audit rows:
    an error in any of them, the COMMIT's own included, is raised here as any other.

    ``locked_heads``: chain heads this transaction already locked and read (a joined run of cash
    charges locks its users' heads with its writes); only the other users' heads are locked
    here, and when there are none the answers go with the audit rows, one round trip in all. A
    head that moved after all (a bug) cannot fork its chain: the audit rows' primary key is
    ``(user_id, seq)``, so the insert fails and the batch is rerun.

    ``first`` (PostgreSQL): statements whose answers are not read, sent ahead of the outcomes'
    in their first round trip (a batch's deferred writes, engine.storage.unit_of_work)."""
    last: list[Query[Any]] = [write(_COMMIT, {})] if commit else []
    if not outcomes:
        if first:
            run_pipelined(connection, [*first, *last])
        return
    answers: dict[str, list[Any]] = {
        "user_id": [outcome.user_id for outcome in outcomes],
        "idempotency_key": [outcome.idempotency_key for outcome in outcomes],
        "response": [outcome.response for outcome in outcomes],
    }
    events = [outcome.audit_event for outcome in outcomes]
    if is_postgresql(connection):
        # At most two round trips (engine.storage.pipeline): the answers with the chain heads
        # not locked yet, then the audit rows chained after them.
        chained = {event.user_id for event in events}
        heads = {user: head for user, head in (locked_heads or {}).items() if user in chained}
        users = sorted(chained - heads.keys())
        ahead = [*first, store_responses_query(answers)]
        if users:
            heads |= run_pipelined(connection, [*ahead, *lock_heads_queries(users)])[-1]
            ahead = []
        run_pipelined(connection, [*ahead, *append_queries(events, heads), *last])
        return
    require(not first, "deferred writes are PostgreSQL's")
    store_responses(connection, answers)
    append_audit_events(connection, events)
