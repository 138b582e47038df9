"""Void: release every leg of an authorization (coupons back to ACTIVATED) — at most once.

A charge that is not AUTHORIZED is CHARGE_NOT_AUTHORIZED. Voiding a hold that is past its
expiry but not yet released by the job is allowed: the outcome for the user is the same release
the job would make, recorded as a VOID. The idempotency key is scoped to the charge's user.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.charge_status import ChargeEvent
from engine.domain.commands import VoidCommand
from engine.domain.ledger import TransactionType
from engine.domain.results import ChargeStateResult
from engine.domain.validation import require_idempotency_key, require_reference
from engine.service.context import EngineContext
from engine.service.holds import AUTHORIZED, not_authorized, resolve_hold
from engine.service.idempotent import execute_idempotent
from engine.service.refund import charge_not_found, owner_of_charge, shard_of_charge
from engine.storage.charges import charge_view, lock_charge, read_charge_row


def validate_void(command: VoidCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("charge_id", command.charge_id, required=True)


def void(context: EngineContext, command: VoidCommand) -> ChargeStateResult:
    validate_void(command)
    return execute_idempotent(
        context,
        shard=shard_of_charge(context, command.charge_id),
        key=command.idempotency_key,
        operation="Void",
        command=command,
        result_type=ChargeStateResult,
        owner=owner_of_charge(command.charge_id),
        effect=lambda connection, now_us: _void(context, connection, command, now_us),
    )


def _void(
    context: EngineContext, connection: Connection, command: VoidCommand, now_us: int
) -> ChargeStateResult:
    row = lock_charge(connection, command.charge_id)
    if row is None:
        raise charge_not_found(command.charge_id)
    if row.status != AUTHORIZED:
        raise not_authorized(row)
    resolve_hold(
        context,
        connection,
        row,
        capture_amount=0,
        event=ChargeEvent.VOID,
        transaction_type=TransactionType.VOID,
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo="void",
    )
    fresh = read_charge_row(connection, row.charge_id)
    if fresh is None:
        raise charge_not_found(row.charge_id)
    return ChargeStateResult(charge=charge_view(connection, fresh))
