"""A unit of work: one database transaction on one shard that rolls back unless committed,
the bounded retry that reruns a whole unit of work on serialization failures and deadlocks, and
the batch transaction of group commit (:class:`BatchTransaction`): many requests' units of work
run in one database transaction, each inside its own savepoint.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from engine.domain.audit_events import AuditEvent
from engine.domain.errors import CofferError, Reason
from engine.storage.pipeline import Query, run_command, run_pipelined

T = TypeVar("T")

#: PostgreSQL SQLSTATEs worth rerunning a whole transaction for.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}
_LOCK_TIMEOUT_SQLSTATE = "55P03"
_CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")


__all__ = [
    "BatchTransaction",
    "ConcurrentChange",
    "RequestOutcome",
    "UnitOfWork",
    "WriteOutcomes",
    "is_lock_timeout",
    "is_transient",
    "is_unavailable",
    "joined_batch",
    "run_transaction",
    "set_session_lock_timeout",
    "sqlstate",
]


class _Transaction:
    """A transaction that rolls back on leaving its ``with`` unless :meth:`commit` was called."""

    _transaction: RootTransaction
    _committed = False

    def _begin(self, connection: Connection) -> None:
        self._transaction = connection.begin()
        self._committed = False

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
            self._leave()
            if not self._committed and self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._release()

    def _leave(self) -> None:
        """Before the rollback: what the subclass undoes first."""

    def _release(self) -> None:
        """After the rollback (even a failed one): what the subclass gives back."""


class UnitOfWork(_Transaction):
    """``with UnitOfWork(engine) as uow: ...; uow.commit()`` — without ``commit`` it rolls back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> UnitOfWork:
        self.connection: Connection = self._engine.connect()
        self._begin(self.connection)
        return self

    def _release(self) -> None:
        self.connection.close()


def sqlstate(error: BaseException) -> str:
    original = getattr(error, "orig", None)
    return str(getattr(original, "sqlstate", "") or "")


class ConcurrentChange(Exception):
    """A row read for a decision changed before the write that relied on it (the write's
    condition refused it): like a serialization failure, the whole transaction is rerun."""


def is_transient(error: BaseException) -> bool:
    """Serialization failures, deadlocks, a :class:`ConcurrentChange` and SQLite's busy lock:
    rerun the transaction."""
    if isinstance(error, ConcurrentChange):
        return True
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


#: The savepoint each request of a batch runs in. Re-used by name: ``ROLLBACK TO`` goes to the
#: latest one, and none is released (COMMIT keeps every one that was not rolled back), which
#: saves a round trip per request.
_REQUEST_SAVEPOINT = "coffer_request"


def _savepoint_command(connection: Connection, sql: str) -> None:
    """A batch's savepoint statement. On PostgreSQL it bypasses psycopg's cursor: psycopg would
    take a ``ROLLBACK TO SAVEPOINT`` (a refused request's) for the end of every statement it
    prepared on the writer's connection and deallocate them all (engine.storage.pipeline.
    prepare_after_uses); and a cursor's execute costs more than the statement does."""
    if connection.dialect.name == "postgresql":
        run_command(connection, sql.encode())
    else:
        connection.exec_driver_sql(sql)


_ambient = threading.local()


@dataclass(frozen=True)
class RequestOutcome:
    """What an acknowledged mutation writes last: ``response`` stored on its key, and its audit
    row (engine.storage.outcomes writes both)."""

    user_id: int
    idempotency_key: str
    response: str
    audit_event: AuditEvent


class WriteOutcomes(Protocol):
    """Writes a transaction's outcomes (engine.storage.outcomes.write_outcomes); with ``commit``
    it may end the transaction with its last statements. ``first`` (PostgreSQL): statements
    sent before the outcomes' own, in the same round trip."""

    def __call__(
        self,
        connection: Connection,
        outcomes: Sequence[RequestOutcome],
        *,
        commit: bool = False,
        locked_heads: Mapping[int, tuple[int, str]] | None = None,
        first: Sequence[Query[Any]] = (),
    ) -> None: ...


def set_session_lock_timeout(connection: Connection, timeout_ms: int) -> None:
    """For the rest of ``connection``'s session (PostgreSQL; SQLite has no lock waits of its
    own): a row lock waited for longer than ``timeout_ms`` fails the statement. Only for a
    connection that never goes back to the pool (a group-commit writer's)."""
    if connection.dialect.name != "postgresql":
        return
    connection.exec_driver_sql(f"SET lock_timeout = {int(timeout_ms)}")
    connection.commit()


class BatchTransaction(_Transaction):
    """The one transaction a group-commit writer runs a batch in, on its held connection.

    While it is open (``with``), :func:`joined_batch` gives it to the calling thread, so a use
    case's unit of work joins it (inside :meth:`savepoint`) instead of opening its own. Rolls
    back unless :meth:`commit` was called.

    The requests' outcomes (stored answers and audit rows) are collected with :meth:`defer` and
    written by :meth:`commit` with ``write_outcomes`` right before COMMIT: one statement per
    table for the whole batch. A request refused in its savepoint takes its outcome with it.

    Writes whose answers nobody reads (a joined run of cash charges', PostgreSQL) are held with
    :meth:`defer_writes` and go with the transaction's next round trip: its COMMIT's, or
    :meth:`flush_writes` before anything else runs on the connection. Their errors then fail
    that round trip, and with it the batch (rerun as any failed batch is)."""

    def __init__(self, engine: Engine, connection: Connection, write_outcomes: WriteOutcomes) -> None:
        self.engine = engine
        self.connection = connection
        self._write_outcomes = write_outcomes
        #: Savepoints whose work was kept: a refusal raised after one of them was kept (outside
        #: any savepoint) cannot be undone on its own, so the writer reruns the batch instead.
        self.savepoints_kept = 0
        self._outcomes: list[RequestOutcome] = []
        self._responses: dict[tuple[int, str], str] = {}
        #: Audit chain heads locked in this transaction outside any savepoint (a savepoint's
        #: rollback would release its locks), as they were read: ``write_outcomes`` chains after
        #: them instead of locking them again.
        self._locked_heads: dict[int, tuple[int, str]] = {}
        self._deferred: list[Query[Any]] = []

    def defer_writes(self, queries: Sequence[Query[Any]]) -> None:
        """Send ``queries`` (PostgreSQL statements whose answers are not read) with the next
        round trip of this transaction."""
        self._deferred.extend(queries)

    def flush_writes(self) -> None:
        """Send the deferred writes now (before a statement that is not theirs to go with)."""
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            run_pipelined(self.connection, deferred)

    def __enter__(self) -> BatchTransaction:
        self._begin(self.connection)
        _ambient.batch = self
        return self

    def _leave(self) -> None:
        _ambient.batch = None

    def defer(self, outcome: RequestOutcome) -> None:
        """Write ``outcome`` with the batch's others at COMMIT (inside a savepoint only)."""
        self._outcomes.append(outcome)
        self._responses[(outcome.user_id, outcome.idempotency_key)] = outcome.response

    def heads_locked(self, heads: Mapping[int, tuple[int, str]]) -> None:
        """``heads`` were locked and read in this transaction, outside any savepoint, and no
        audit row has been appended for their users since (appends wait for :meth:`commit`)."""
        self._locked_heads.update(heads)

    def pending_response(self, user_id: int, key: str) -> str | None:
        """The answer an earlier request of this batch gave on ``key``, not stored yet: a retry
        arriving in the same batch as its original replays it."""
        return self._responses.get((user_id, key))

    def commit(self) -> None:
        # The outcomes' writer may send COMMIT with its last statements (one round trip less);
        # the driver's commit then finds no transaction open and sends nothing.
        deferred, self._deferred = self._deferred, []
        self._write_outcomes(
            self.connection, self._outcomes, commit=True, locked_heads=self._locked_heads, first=deferred
        )
        super().commit()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[Connection]:
        """One request's share of the batch: a refusal (:class:`CofferError`) undoes exactly
        this request's statements and outcome and leaves the batch open for its neighbours. Any
        other exception leaves the transaction as it is: the writer rolls it back and reruns it."""
        self.flush_writes()  # they are the batch's, not this savepoint's to undo
        _savepoint_command(self.connection, f"SAVEPOINT {_REQUEST_SAVEPOINT}")
        deferred = len(self._outcomes)
        try:
            yield self.connection
        except CofferError:
            _savepoint_command(self.connection, f"ROLLBACK TO SAVEPOINT {_REQUEST_SAVEPOINT}")
            for outcome in self._outcomes[deferred:]:
                del self._responses[(outcome.user_id, outcome.idempotency_key)]
            del self._outcomes[deferred:]
            raise
        self.savepoints_kept += 1


def joined_batch(engine: Engine) -> BatchTransaction | None:
    """The batch this thread is running on ``engine``, or ``None`` (then the caller opens its
    own unit of work)."""
    batch: BatchTransaction | None = getattr(_ambient, "batch", None)
    if batch is None or batch.engine is not engine:
        return None
    return batch
