"""Idempotency keys: claimed in the effect's own transaction, answered from the stored response."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, text, tuple_
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from engine.domain.errors import CofferError, Reason
from engine.storage.bulk import Columns, as_dicts, is_postgresql, pg_arrays, row_count, unnest_select
from engine.storage.dialect import insert_or_ignore
from engine.storage.pipeline import Query, Rows, write
from engine.storage.schema import idempotency_keys
from engine.storage.unit_of_work import is_lock_timeout


@dataclass(frozen=True)
class StoredKey:
    operation: str
    request_digest: str
    response: str | None


def claim_key(
    connection: Connection,
    *,
    user_id: int,
    key: str,
    operation: str,
    request_digest: str,
    now_us: int,
) -> StoredKey | None:
    """Claim ``key`` for this transaction; ``None`` when claimed, else the earlier claim.

    A concurrent claim still in flight holds the row lock: we wait for it (up to the lock
    timeout, then IDEMPOTENCY_KEY_IN_USE) and then see its committed row, or take the key if it
    rolled back.
    """
    try:
        inserted = insert_or_ignore(
            connection,
            idempotency_keys,
            {
                "user_id": user_id,
                "idempotency_key": key,
                "operation": operation,
                "request_digest": request_digest,
                "response": None,
                "created_at_us": now_us,
            },
        )
    except DBAPIError as error:
        if is_lock_timeout(error):
            raise CofferError(
                Reason.IDEMPOTENCY_KEY_IN_USE,
                "another request with this idempotency key is in flight",
                metadata={"idempotency_key": key},
            ) from error
        raise
    if inserted:
        return None
    row = connection.execute(_CLAIMED, {"p_user_id": user_id, "p_key": key}).one()
    return StoredKey(row.operation, row.request_digest, row.response)


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why): every single mutation claims a key.
_THIS_KEY = (
    idempotency_keys.c.user_id == bindparam("p_user_id"),
    idempotency_keys.c.idempotency_key == bindparam("p_key"),
)
_CLAIMED = select(
    idempotency_keys.c.operation, idempotency_keys.c.request_digest, idempotency_keys.c.response
).where(*_THIS_KEY)
_RESPONSE = select(idempotency_keys.c.response).where(*_THIS_KEY)
_STORE_RESPONSE = (
    idempotency_keys.update()
    .where(
        idempotency_keys.c.user_id == bindparam("p_user_id"),
        idempotency_keys.c.idempotency_key == bindparam("p_key"),
    )
    .values(response=bindparam("p_response"))
)


def store_response(connection: Connection, *, user_id: int, key: str, response: str) -> None:
    connection.execute(_STORE_RESPONSE, {"p_user_id": user_id, "p_key": key, "p_response": response})


def read_response(connection: Connection, *, user_id: int, key: str) -> str:
    """The stored answer of a completed request under ``(user_id, key)`` (it must exist)."""
    response: str = connection.execute(_RESPONSE, {"p_user_id": user_id, "p_key": key}).scalar_one()
    return response


# Bulk forms (IssueBatch, docs/bulk.md): one statement per chunk. Rows arrive sorted by
# (user_id, key), the order every chunk claims in, so two chunks never wait on each other in a cycle.
_CLAIM_COLUMNS = ("user_id", "idempotency_key", "operation", "request_digest", "created_at_us")
_PG_CLAIM_KEYS = text(
    f"INSERT INTO idempotency_keys ({', '.join(_CLAIM_COLUMNS)}) "
    f"{unnest_select(idempotency_keys, _CLAIM_COLUMNS)} "
    "ON CONFLICT DO NOTHING RETURNING user_id, idempotency_key"
)
_SQLITE_CLAIM_KEYS = (
    sqlite.insert(idempotency_keys)
    .on_conflict_do_nothing()
    .returning(idempotency_keys.c.user_id, idempotency_keys.c.idempotency_key)
)
_SQLITE_STORE_RESPONSES = "UPDATE idempotency_keys SET response = ? WHERE user_id = ? AND idempotency_key = ?"
_PG_STORE_RESPONSES = text(
    "UPDATE idempotency_keys AS k SET response = rows.response "
    f"FROM ({unnest_select(idempotency_keys, ('user_id', 'idempotency_key', 'response'))}) AS rows "
    "WHERE k.user_id = rows.user_id AND k.idempotency_key = rows.idempotency_key"
)


def claim_columns(
    claims: Sequence[tuple[int, str, str]], *, operation: str, now_us: int
) -> dict[str, list[object]]:
    """The rows :func:`claim_keys` takes for ``(user_id, key, request_digest)`` claims of one
    operation made at ``now_us``."""
    return {
        "user_id": [user for user, _, _ in claims],
        "idempotency_key": [key for _, key, _ in claims],
        "operation": [operation] * len(claims),
        "request_digest": [digest for _, _, digest in claims],
        "created_at_us": [now_us] * len(claims),
    }


def claim_keys(connection: Connection, rows: Columns) -> set[tuple[int, str]]:
    """Claim many keys at once (``rows``: the columns of :data:`_CLAIM_COLUMNS`); the answer is
    the ``(user_id, key)`` pairs this statement claimed — the others were claimed before.

    As with :func:`claim_key`, a key that an uncommitted transaction holds makes PostgreSQL wait
    for it (up to the lock timeout, an error that fails the whole chunk).
    """
    if row_count(rows) == 0:
        return set()
    if is_postgresql(connection):
        result = connection.execute(_PG_CLAIM_KEYS, pg_arrays({name: rows[name] for name in _CLAIM_COLUMNS}))
    else:
        result = connection.execute(_SQLITE_CLAIM_KEYS, [{**row, "response": None} for row in as_dicts(rows)])
    return {(int(row.user_id), str(row.idempotency_key)) for row in result}


def release_keys(connection: Connection, pairs: Sequence[tuple[int, str]]) -> None:
    """Drop the claims of ``(user_id, key)`` pairs this transaction made for requests it then
    refused: as a refused single request's rollback does, so a retry may take the key."""
    if not pairs:
        return
    connection.execute(
        idempotency_keys.delete().where(
            tuple_(idempotency_keys.c.user_id, idempotency_keys.c.idempotency_key).in_(
                bindparam("p_pairs", expanding=True)
            ),
            idempotency_keys.c.response.is_(None),
        ),
        {"p_pairs": list(pairs)},
    )


def read_keys(connection: Connection, pairs: Sequence[tuple[int, str]]) -> dict[tuple[int, str], StoredKey]:
    """The stored claims of ``(user_id, key)`` pairs (those that exist)."""
    if not pairs:
        return {}
    rows = connection.execute(
        select(
            idempotency_keys.c.user_id,
            idempotency_keys.c.idempotency_key,
            idempotency_keys.c.operation,
            idempotency_keys.c.request_digest,
            idempotency_keys.c.response,
        ).where(
            tuple_(idempotency_keys.c.user_id, idempotency_keys.c.idempotency_key).in_(
                bindparam("p_pairs", expanding=True)
            )
        ),
        {"p_pairs": list(pairs)},
    ).all()
    return {
        (int(row.user_id), str(row.idempotency_key)): StoredKey(
            row.operation, row.request_digest, row.response
        )
        for row in rows
    }


def store_responses(connection: Connection, rows: Columns) -> None:
    """Store many answers at once (``rows``: ``user_id``, ``idempotency_key``, ``response``)."""
    if row_count(rows) == 0:
        return
    if is_postgresql(connection):
        connection.execute(_PG_STORE_RESPONSES, pg_arrays(rows))
        return
    # The driver's executemany over tuples: no per-row parameter dicts (engine.storage.bulk.insert_rows).
    connection.exec_driver_sql(
        _SQLITE_STORE_RESPONSES,
        list(zip(rows["response"], rows["user_id"], rows["idempotency_key"], strict=True)),
    )


# Pipelined forms (PostgreSQL, engine.storage.pipeline): the same statements, sent with others.
_PG_PAIRS = (
    "SELECT * FROM unnest(CAST(:user_id AS BIGINT[]), CAST(:idempotency_key AS TEXT[])) AS p(user_id, k)"
)
_PG_READ_KEYS = text(
    "SELECT i.user_id, i.idempotency_key, i.operation, i.request_digest, i.response "
    f"FROM idempotency_keys AS i JOIN ({_PG_PAIRS}) AS p "
    "ON i.user_id = p.user_id AND i.idempotency_key = p.k"
)
_PG_RELEASE_KEYS = text(
    f"DELETE FROM idempotency_keys AS i USING ({_PG_PAIRS}) AS p "
    "WHERE i.user_id = p.user_id AND i.idempotency_key = p.k AND i.response IS NULL"
)


def _pairs_parameters(pairs: Sequence[tuple[int, str]]) -> dict[str, str]:
    return pg_arrays({"user_id": [user for user, _ in pairs], "idempotency_key": [key for _, key in pairs]})


def _claimed(answer: Rows) -> set[tuple[int, str]]:
    return {(int(row.user_id), str(row.idempotency_key)) for row in answer[0]}


def claim_keys_query(rows: Columns) -> Query[set[tuple[int, str]]]:
    """:func:`claim_keys` as one statement of a pipeline."""
    row_count(rows)
    return Query(_PG_CLAIM_KEYS, pg_arrays({name: rows[name] for name in _CLAIM_COLUMNS}), _claimed)


def _stored_keys(answer: Rows) -> dict[tuple[int, str], StoredKey]:
    return {
        (int(row.user_id), str(row.idempotency_key)): StoredKey(
            row.operation, row.request_digest, row.response
        )
        for row in answer[0]
    }


def read_keys_query(pairs: Sequence[tuple[int, str]]) -> Query[dict[tuple[int, str], StoredKey]]:
    """:func:`read_keys` as one statement of a pipeline (after a claim in the same pipeline it
    also finds the claims just made: the caller tells them apart by the claim's answer)."""
    return Query(_PG_READ_KEYS, _pairs_parameters(pairs), _stored_keys)


def release_keys_query(pairs: Sequence[tuple[int, str]]) -> Query[None]:
    """:func:`release_keys` as one statement of a pipeline."""
    return write(_PG_RELEASE_KEYS, _pairs_parameters(pairs))


def store_responses_query(rows: Columns) -> Query[None]:
    """:func:`store_responses` as one statement of a pipeline."""
    row_count(rows)
    return write(_PG_STORE_RESPONSES, pg_arrays(rows))
