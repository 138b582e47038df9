"""Idempotency keys: claimed in the effect's own transaction, answered from the stored response."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import DBAPIError

from engine.domain.errors import CofferError, Reason
from engine.storage.dialect import insert_or_ignore
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
    row = connection.execute(
        select(
            idempotency_keys.c.operation,
            idempotency_keys.c.request_digest,
            idempotency_keys.c.response,
        ).where(idempotency_keys.c.user_id == user_id, idempotency_keys.c.idempotency_key == key)
    ).one()
    return StoredKey(row.operation, row.request_digest, row.response)


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
    response: str = connection.execute(
        select(idempotency_keys.c.response).where(
            idempotency_keys.c.user_id == user_id, idempotency_keys.c.idempotency_key == key
        )
    ).scalar_one()
    return response
