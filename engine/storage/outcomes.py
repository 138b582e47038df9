"""A mutation's last two rows: its stored answer (on its idempotency key) and its audit row.

Both are written once the effect is known, in the effect's transaction, and nothing in that
transaction reads them back except a replay of the same key. A lone request writes its own at
once; a group-commit batch (:class:`engine.storage.unit_of_work.BatchTransaction`) collects those
of the requests whose savepoint it kept and writes them all just before its COMMIT, one
statement per table, so a batch of 64 charges costs four statements here instead of 256.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from engine.storage.audit_trail import append_audit_events, append_queries, lock_heads_queries
from engine.storage.bulk import is_postgresql
from engine.storage.idempotency import store_responses, store_responses_query
from engine.storage.pipeline import run_pipelined, write
from engine.storage.unit_of_work import RequestOutcome

__all__ = ["RequestOutcome", "write_outcomes"]


#: Sent with a batch's last statements (``commit``), saving the round trip of its own.
_COMMIT = text("COMMIT")


def write_outcomes(
    connection: Connection, outcomes: Sequence[RequestOutcome], *, commit: bool = False
) -> None:
    """Store every answer on its key and append every audit row to its user's chain (in the
    order given, which is each user's order of requests). With ``commit`` (a group-commit
    batch's last writes) PostgreSQL's COMMIT is sent in the same round trip as the audit rows:
    an error in any of them, the COMMIT's own included, is raised here as any other."""
    if not outcomes:
        return
    answers: dict[str, list[Any]] = {
        "user_id": [outcome.user_id for outcome in outcomes],
        "idempotency_key": [outcome.idempotency_key for outcome in outcomes],
        "response": [outcome.response for outcome in outcomes],
    }
    events = [outcome.audit_event for outcome in outcomes]
    if is_postgresql(connection):
        # Two round trips in all (engine.storage.pipeline): the answers with the chain heads,
        # then the audit rows chained after them.
        users = sorted({event.user_id for event in events})
        heads = run_pipelined(connection, [store_responses_query(answers), *lock_heads_queries(users)])[-1]
        run_pipelined(connection, [*append_queries(events, heads), *([write(_COMMIT, {})] if commit else [])])
        return
    store_responses(connection, answers)
    append_audit_events(connection, events)
