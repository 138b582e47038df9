"""Per-shard group commit: the mutations for one shard queue for that shard's writer thread,
which runs everything queued (up to :data:`MAX_BATCH_REQUESTS`) in ONE database transaction as
soon as its previous batch has committed — no timer wait.

What the writer changes is how transactions are opened and committed: each request is its
ordinary use case (``work``), whose unit of work (:func:`engine.service.idempotent.execute_idempotent`)
joins the batch's transaction inside a savepoint of its own — except that neighbouring requests
marked :class:`Joinable` (cash-only charges: engine.service.cash_charges) are applied together by
one call with set-based statements, one outcome each, their refusals answers rather than
exceptions. So:

* a refusal (:class:`CofferError`: insufficient funds, a reused key, a coupon already used, a
  frozen account) rolls back to that request's savepoint; its neighbours go on and commit;
* requests of the same user run in arrival order (the order is a stable sort by user);
* a deadlock, a serialization failure or a lock wait past :data:`BATCH_LOCK_TIMEOUT_MS` rolls the
  batch back and runs it again once; that, and anything else (a lost connection, a failed
  commit, a bug), rolls the whole batch back and reruns its requests one by one, each in its own
  transaction as a lone request runs — safe because every request's idempotency key is claimed
  in the same transaction as its effect, so a batch that did commit after all is replayed, never
  doubled;
* no outcome is delivered before the transaction that holds it has committed.

The writer thread holds one connection; the caller (engine.api.runner) hands in ``deliver``,
called once per batch with every settled request, so an event loop is woken once per batch.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from engine.domain.errors import CofferError, Reason, require
from engine.service.context import EngineContext
from engine.storage.charges import charge_owners
from engine.storage.errors import first_line
from engine.storage.outcomes import write_outcomes
from engine.storage.pipeline import prepare_after_uses, reset_prepared
from engine.storage.router import Shard, ShardRouter
from engine.storage.unit_of_work import (
    BatchTransaction,
    is_lock_timeout,
    is_transient,
    set_session_lock_timeout,
)

__all__ = [
    "MAX_BATCH_REQUESTS",
    "MAX_QUEUED_REQUESTS",
    "GroupCommit",
    "Joinable",
    "PendingWrite",
    "ShardWriter",
    "WriteRoute",
    "batch_order",
    "joined_runs",
    "route_for_code",
    "route_for_id",
    "route_for_user",
]

logger = logging.getLogger("coffer.group_commit")

#: Requests per batch. PostgreSQL keeps up to 64 subtransaction ids per backend in shared
#: memory; past that every snapshot elsewhere overflows to pg_subtrans, so a batch stays within it.
MAX_BATCH_REQUESTS = 64
#: Requests waiting for one shard's writer; beyond it a request is refused as UNAVAILABLE
#: (the server admits far fewer concurrent calls than this, so it is a bound, not a policy).
MAX_QUEUED_REQUESTS = 4096
#: Longest wait for a row lock inside a batch. Two engines' batches can wait on each other
#: (the same key sent to both at once, a charge id's user locked after other users); PostgreSQL
#: finds such a cycle only after ``deadlock_timeout`` (1 s by default), stalling both writers.
#: A short wait ends it sooner: the batch that gave up runs again once, the other has committed.
BATCH_LOCK_TIMEOUT_MS = 200
#: A batch is run together at most this often before its requests are rerun one by one.
BATCH_ATTEMPTS = 2
#: How long stopping waits for a writer to finish what is queued.
STOP_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")
Token = TypeVar("Token")


@dataclass(frozen=True)
class WriteRoute:
    """Where a mutation runs: its shard, and its user when the request names one (a charge id or
    a code names its user only through a row, read inside the transaction). A request that names
    a charge carries its ``charge_id``: the writer looks up the charge's user (which never
    changes) before it orders the batch, so the request takes its place among its user's."""

    shard: Shard
    user_id: int | None = None
    charge_id: str | None = None


def route_for_user(context: EngineContext, user_id: int) -> WriteRoute:
    return WriteRoute(context.router.for_user(user_id), user_id)


def route_for_id(context: EngineContext, identifier: str) -> WriteRoute | None:
    """A charge (or refund) id's shard; ``None`` for an id that cannot be ours (the use case
    refuses it without a transaction)."""
    shard = context.router.for_id(identifier)
    return None if shard is None else WriteRoute(shard, charge_id=identifier)


def route_for_code(context: EngineContext, code: str) -> WriteRoute | None:
    shard = context.router.for_code(code)
    return None if shard is None else WriteRoute(shard)


def _as_is(result: Any) -> object:
    return result


@dataclass(frozen=True)
class Joinable:
    """A request the writer may apply together with its neighbours that share its ``together``:
    one call runs them all with set-based statements, inside the batch's transaction, and gives
    one result (or :class:`CofferError` refusal) per item, in order (TigerBeetle's batch shape).

    ``key`` is the request's ``(user_id, idempotency_key)``: a repeat starts a new group, so it
    is answered after its first use. ``answer`` turns an item's result into the request's result
    (a handler's response message). Should the batch fail, the request's ordinary ``work`` reruns
    it alone."""

    together: Callable[[Sequence[Any]], Sequence[Any]]
    item: Any
    key: tuple[int, str]
    answer: Callable[[Any], object] = _as_is


@dataclass(eq=False)
class PendingWrite(Generic[Token]):
    """One queued request: ``work`` runs on the writer; ``result`` or ``error`` is its outcome.
    A request that can be applied with its neighbours also carries its :class:`Joinable`."""

    route: WriteRoute
    work: Callable[[], object]
    token: Token
    result: object = None
    error: BaseException | None = None
    joinable: Joinable | None = None


def batch_order(
    batch: Sequence[PendingWrite[Token]], owners: Mapping[str, int] | None = None
) -> list[PendingWrite[Token]]:
    """The order a batch runs in: by user (so two engines' batches lock users' rows in the same
    order and cannot wait on each other in a cycle), stable so one user's requests keep their
    arrival order. A request names its user, or names a charge whose user ``owners`` gives;
    one whose user is not known is a fence: nothing moves across it.

    Fences were what made the two engine processes' batches wait on each other in a cycle (a
    fence's user locked after the users sorted before it, then lower users again): with
    PostgreSQL's ``deadlock_timeout`` at 50 ms, a 15 s run of the bench's mixed mix logged 18
    deadlocks, most between two batches' row locks on ``balances`` (docs/performance.md)."""
    known = owners or {}
    ordered: list[PendingWrite[Token]] = []
    run: list[tuple[int, PendingWrite[Token]]] = []
    for request in batch:
        user = _user_of(request, known)
        if user is None:
            ordered.extend(item for _, item in sorted(run, key=_first))
            ordered.append(request)
            run = []
        else:
            run.append((user, request))
    ordered.extend(item for _, item in sorted(run, key=_first))
    return ordered


def _first(pair: tuple[int, PendingWrite[Token]]) -> int:
    return pair[0]


def _user_of(request: PendingWrite[Token], owners: Mapping[str, int]) -> int | None:
    route = request.route
    if route.user_id is not None:
        return route.user_id
    return None if route.charge_id is None else owners.get(route.charge_id)


def _named_charges(batch: Sequence[PendingWrite[Token]]) -> list[str]:
    """The charges the batch's requests name without naming their user."""
    return [
        request.route.charge_id
        for request in batch
        if request.route.user_id is None and request.route.charge_id is not None
    ]


def joined_runs(ordered: Sequence[PendingWrite[Token]]) -> list[list[PendingWrite[Token]]]:
    """``ordered`` cut into runs, in order: consecutive joinable requests of the same
    ``together`` with no key twice form one run (applied by one call); every other request is a
    run of its own. Running the runs in order keeps the order of ``ordered``."""
    runs: list[list[PendingWrite[Token]]] = []
    keys: set[tuple[int, str]] = set()
    for request in ordered:
        joinable = request.joinable
        previous = runs[-1][-1].joinable if runs else None
        if (
            joinable is not None
            and previous is not None
            and previous.together == joinable.together
            and joinable.key not in keys
        ):
            runs[-1].append(request)
            keys.add(joinable.key)
            continue
        runs.append([request])
        keys = {joinable.key} if joinable is not None else set()
    return runs


class ShardWriter(Generic[Token]):
    """The writer thread of one shard and its queue."""

    def __init__(
        self,
        shard: Shard,
        deliver: Callable[[Sequence[PendingWrite[Token]]], None],
        *,
        max_batch_requests: int = MAX_BATCH_REQUESTS,
        max_queued_requests: int = MAX_QUEUED_REQUESTS,
    ) -> None:
        require(0 < max_batch_requests <= 256, "a batch holds 1..256 requests")
        self.shard = shard
        self._deliver = deliver
        self._max_batch = max_batch_requests
        self._max_queued = max_queued_requests
        self._queue: collections.deque[PendingWrite[Token]] = collections.deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._connection: Connection | None = None
        self.batches_committed = 0
        self.batches_rerun = 0
        self._thread = threading.Thread(target=self._serve, name=f"coffer-writer-{shard.index}", daemon=True)
        self._thread.start()

    def submit(self, request: PendingWrite[Token]) -> None:
        with self._condition:
            if self._stopping:
                raise CofferError(Reason.STORAGE_UNAVAILABLE, "the engine is stopping; retry elsewhere")
            if len(self._queue) >= self._max_queued:
                raise CofferError(Reason.STORAGE_UNAVAILABLE, "the shard's write queue is full; retry")
            self._queue.append(request)
            if len(self._queue) == 1:
                self._condition.notify()

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Refuse new requests, finish the queued ones, close the held connection."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout_seconds)

    def _take(self) -> list[PendingWrite[Token]]:
        with self._condition:
            while not self._queue and not self._stopping:
                self._condition.wait()
            count = min(len(self._queue), self._max_batch)
            return [self._queue.popleft() for _ in range(count)]

    def _serve(self) -> None:
        try:
            while True:
                batch = self._take()
                if not batch:
                    return
                self.run_batch(batch)
                try:
                    self._deliver(batch)
                except Exception:  # the loop is gone (shutdown): nobody is waiting any more
                    logger.exception("could not deliver a batch's outcomes on shard %d", self.shard.index)
        finally:
            self._drop_connection()

    def run_batch(self, batch: Sequence[PendingWrite[Token]]) -> None:
        """Run ``batch`` in one transaction — again once if that met a deadlock, a serialization
        failure or a lock wait past :data:`BATCH_LOCK_TIMEOUT_MS` — or else (and on any other
        failure) one by one; when this returns every request has its outcome and every effect it
        reports has committed."""
        # The users of the charges the batch names, read by its first attempt: a charge's user
        # never changes, so a second attempt and a one-by-one rerun order by the same answer.
        owners: dict[str, int] = {}
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                self._run_together(batch, owners)
                self.batches_committed += 1
                return
            except Exception as failure:
                again = attempt < BATCH_ATTEMPTS and (is_transient(failure) or is_lock_timeout(failure))
                logger.warning(
                    "a batch of %d on shard %d failed (%s: %s); %s",
                    len(batch),
                    self.shard.index,
                    type(failure).__name__,
                    first_line(failure),
                    "running it again" if again else "rerunning its requests one by one",
                )
                if not again:
                    self._drop_connection()
                    break
                # A transaction that only waited too long leaves a sound session: kept, its
                # prepared statements started afresh (its rollback made psycopg drop its own).
                self._after_rollback()
        self.batches_rerun += 1
        for request in batch_order(batch, owners):
            # No batch is open on this thread now, so each request opens its own transaction.
            try:
                request.result, request.error = request.work(), None
            except Exception as error:  # delivered to that request's caller
                request.result, request.error = None, error

    def _run_together(self, batch: Sequence[PendingWrite[Token]], owners: dict[str, int]) -> None:
        """``batch`` in one transaction, ordered by :func:`batch_order`; ``owners`` is filled
        with the users of the charges it names that no earlier attempt looked up."""
        connection = self._held_connection()
        with BatchTransaction(self.shard.engine, connection, write_outcomes) as transaction:
            unplaced = [charge_id for charge_id in _named_charges(batch) if charge_id not in owners]
            if unplaced:
                owners.update(charge_owners(connection, unplaced))
            ordered = batch_order(batch, owners)
            for run in joined_runs(ordered):
                transaction.flush_writes()  # a joined run's, before the next run's statements
                if run[0].joinable is not None:
                    _run_joined(run, run[0].joinable)
                    continue
                request = run[0]
                kept = transaction.savepoints_kept
                try:
                    request.result = request.work()
                    request.error = None
                except CofferError as refusal:
                    if transaction.savepoints_kept != kept:
                        raise  # refused after its effect was kept: only a rerun undoes it
                    request.result, request.error = None, refusal
            transaction.commit()

    def _held_connection(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            self._drop_connection()
            connection = self.shard.engine.connect()
            try:
                set_session_lock_timeout(connection, BATCH_LOCK_TIMEOUT_MS)
                if connection.dialect.name == "postgresql":
                    # The one-at-a-time requests' statements are prepared after a few uses, as
                    # the pipelines' are at once: a connection held by its writer, never
                    # pooled, whose savepoints psycopg never sees (engine.storage.pipeline).
                    prepare_after_uses(connection)
            except Exception:
                connection.invalidate()
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _after_rollback(self) -> None:
        connection = self._connection
        if connection is None or connection.dialect.name != "postgresql":
            return
        try:
            reset_prepared(connection)
        except Exception:  # a session that cannot even deallocate is not worth keeping
            logger.exception("could not reset the prepared statements on shard %d", self.shard.index)
            self._drop_connection()

    def _drop_connection(self) -> None:
        """Let go of the held connection, closed for good, never pooled: its session has the
        batches' short lock timeout, and after a failure it may be in any state."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            connection.invalidate()
            connection.close()


def _run_joined(run: Sequence[PendingWrite[Token]], first: Joinable) -> None:
    """Apply ``run`` with one call of its ``together``; anything it raises fails the batch (which
    is then rerun one by one), so its refusals come back as values, never raised."""
    joinables = [request.joinable for request in run]
    outcomes = first.together([joinable.item for joinable in joinables if joinable is not None])
    require(len(outcomes) == len(run), "a joined run gives one outcome per request")
    for request, joinable, outcome in zip(run, joinables, outcomes, strict=True):
        if isinstance(outcome, CofferError):
            request.result, request.error = None, outcome
        elif joinable is not None:
            request.result, request.error = joinable.answer(outcome), None


class GroupCommit(Generic[Token]):
    """One :class:`ShardWriter` per shard of the router."""

    def __init__(
        self,
        router: ShardRouter,
        deliver: Callable[[Sequence[PendingWrite[Token]]], None],
        *,
        max_batch_requests: int = MAX_BATCH_REQUESTS,
    ) -> None:
        self.writers = tuple(
            ShardWriter(shard, deliver, max_batch_requests=max_batch_requests) for shard in router.shards
        )

    def submit(
        self, route: WriteRoute, work: Callable[[], T], token: Token, joinable: Joinable | None = None
    ) -> None:
        self.writers[route.shard.index].submit(PendingWrite(route, work, token, joinable=joinable))

    def stop(self) -> None:
        for writer in self.writers:
            writer.stop()
