"""A unit of work: one database transaction on one shard that rolls back unless committed,
and the bounded retry that reruns a whole unit of work on serialization failures and deadlocks.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from engine.domain.errors import CofferError, Reason

T = TypeVar("T")

#: PostgreSQL SQLSTATEs worth rerunning a whole transaction for.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
_LOCK_TIMEOUT_SQLSTATE = "55P03"
_CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")


class UnitOfWork:
    """``with UnitOfWork(engine) as uow: ...; uow.commit()`` — without ``commit`` it rolls back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._committed = False

    def __enter__(self) -> UnitOfWork:
        self.connection: Connection = self._engine.connect()
        self._transaction = self.connection.begin()
        return self

    def commit(self) -> None:
        self._transaction.commit()
        self._committed = True

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if not self._committed and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self.connection.close()


def sqlstate(error: BaseException) -> str:
    original = getattr(error, "orig", None)
    return str(getattr(original, "sqlstate", "") or "")


def is_transient(error: BaseException) -> bool:
    """Serialization failures, deadlocks and SQLite's busy lock: rerun the transaction."""
    if not isinstance(error, DBAPIError):
        return False
    if sqlstate(error) in _RETRYABLE_SQLSTATES:
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)


def is_lock_timeout(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and sqlstate(error) == _LOCK_TIMEOUT_SQLSTATE


def is_unavailable(error: BaseException) -> bool:
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = sqlstate(error)
    if code.startswith(_CONNECTION_SQLSTATE_PREFIXES):
        return True
    return isinstance(error, OperationalError) and not code and "database is locked" not in str(error.orig)


def run_transaction(work: Callable[[], T], *, attempts: int) -> T:
    """Run ``work`` (which opens its own unit of work) with bounded, jittered retries.

    Retries spent → ABORTED / CONTENTION (the caller may retry with the same key); a lock wait
    past the lock timeout → ABORTED / CONTENTION too; a lost database → UNAVAILABLE.
    """
    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.005, max=0.2),
        retry=retry_if_exception(is_transient),
        reraise=False,
    )
    try:
        return retrying(work)
    except RetryError as error:
        raise CofferError(
            Reason.CONTENTION,
            f"the transaction conflicted {attempts} times; retry with the same idempotency key",
        ) from error
    except DBAPIError as error:
        if is_lock_timeout(error):
            raise CofferError(
                Reason.CONTENTION, "a row stayed locked past the lock timeout; retry with the same key"
            ) from error
        if is_unavailable(error):
            raise CofferError(Reason.STORAGE_UNAVAILABLE, "the shard database is not answering") from error
        raise
