"""The one place a mutating use case claims its idempotency key and stores its answer.

Same key + same payload → the stored answer with ``replayed = True`` and no second effect.
Same key + another payload → ALREADY_EXISTS / IDEMPOTENCY_KEY_REUSED. A refused request rolls
back with its key, so it leaves no trace and may be retried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from engine.domain.errors import CofferError, Reason
from engine.domain.serialization import dumps, loads, payload_digest
from engine.service.audit_trail import mutation_event
from engine.service.context import EngineContext
from engine.storage.idempotency import StoredKey, claim_key
from engine.storage.outcomes import write_outcomes
from engine.storage.router import Shard
from engine.storage.unit_of_work import (
    BatchTransaction,
    RequestOutcome,
    UnitOfWork,
    joined_batch,
    run_transaction,
)


class Replayable(Protocol):
    @property
    def replayed(self) -> bool: ...


R = TypeVar("R", bound=Replayable)


def key_reused(key: str) -> CofferError:
    return CofferError(
        Reason.IDEMPOTENCY_KEY_REUSED,
        "this idempotency key was used with a different request",
        metadata={"idempotency_key": key, "field": "idempotency_key"},
    )


def key_in_use(key: str) -> CofferError:
    return CofferError(
        Reason.IDEMPOTENCY_KEY_IN_USE,
        "another request with this idempotency key is in flight",
        metadata={"idempotency_key": key},
    )


def answer_claimed_before(
    stored: StoredKey,
    *,
    user_id: int,
    key: str,
    digest: str,
    result_type: type[R],
    batch: BatchTransaction | None,
) -> R:
    """The answer to a request whose key an earlier request claimed: its stored answer replayed,
    or the refusal that says why not (another payload; still in flight)."""
    if stored.request_digest != digest:
        raise key_reused(key)
    response = stored.response
    if response is None and batch is not None:
        # Claimed earlier in this very batch: its answer is written at the batch's COMMIT.
        response = batch.pending_response(user_id, key)
    if response is None:
        raise key_in_use(key)
    original = loads(result_type, response)
    return dataclasses.replace(original, replayed=True)  # type: ignore[type-var]


def acknowledged(
    user_id: int,
    now_us: int,
    operation: str,
    key: str,
    digest: str,
    command: Any,
    result: Any,
    response: str,
) -> RequestOutcome:
    """What an applied request leaves: its stored answer and its audit row (docs/security.md
    "Audit trail"), both in the effect's transaction — now, or with the batch's others right
    before its COMMIT."""
    return RequestOutcome(
        user_id=user_id,
        idempotency_key=key,
        response=response,
        audit_event=mutation_event(user_id, now_us, operation, key, digest, command, result),
    )


def execute_idempotent(
    context: EngineContext,
    *,
    shard: Shard,
    key: str,
    operation: str,
    command: Any,
    result_type: type[R],
    owner: int | Callable[[Connection], int],
    effect: Callable[[Connection, int], R],
) -> R:
    """Run ``effect(connection, now_us)`` once per ``(owner, key)``, in one transaction: its
    own, or — on a group-commit writer (:mod:`engine.service.group_commit`) — a savepoint of the
    batch's transaction. Either way the key is claimed in the transaction of the effect.

    ``owner`` is the user whose shard the request runs on, or a function that finds it inside
    the transaction (a charge id names its user only through the charge row).
    """
    digest = payload_digest(operation, command)

    def apply(connection: Connection, now_us: int, batch: BatchTransaction | None) -> R:
        user_id = owner if isinstance(owner, int) else owner(connection)
        stored = claim_key(
            connection,
            user_id=user_id,
            key=key,
            operation=operation,
            request_digest=digest,
            now_us=now_us,
        )
        if stored is not None:
            return answer_claimed_before(
                stored, user_id=user_id, key=key, digest=digest, result_type=result_type, batch=batch
            )
        result = effect(connection, now_us)
        stored_form = dataclasses.replace(result, replayed=False)  # type: ignore[type-var]
        outcome = acknowledged(user_id, now_us, operation, key, digest, command, result, dumps(stored_form))
        if batch is not None:
            batch.defer(outcome)
        else:
            write_outcomes(connection, [outcome])
        return result

    batch = joined_batch(shard.engine)
    if batch is not None:
        # Inside a group-commit batch: the writer commits (or reruns) the whole batch.
        with batch.savepoint() as connection:
            return apply(connection, context.now_us(), batch)

    def attempt() -> R:
        with UnitOfWork(shard.engine) as unit:
            result = apply(unit.connection, context.now_us(), None)
            unit.commit()
            return result

    return run_transaction(attempt, attempts=context.settings.transaction_attempts)


class UserCommand(Protocol):
    @property
    def idempotency_key(self) -> str: ...

    @property
    def user_id(self) -> int: ...


def execute_for_user(
    context: EngineContext,
    command: UserCommand,
    *,
    operation: str,
    result_type: type[R],
    effect: Callable[[Connection, int], R],
) -> R:
    """The common case: the command names its user, whose shard runs it and who owns its key."""
    return execute_idempotent(
        context,
        shard=context.router.for_user(command.user_id),
        key=command.idempotency_key,
        operation=operation,
        command=command,
        result_type=result_type,
        owner=command.user_id,
        effect=effect,
    )
