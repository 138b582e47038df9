"""Capture: take an authorization's paid amount (or part of it) for good; the rest is released in
the same transaction (CONTRACT §3 Holds; the split is :mod:`engine.domain.holds`).

``amount = 0`` captures everything; more than authorized is CAPTURE_EXCEEDS_AUTHORIZED. A hold
past ``hold_expires_at`` is HOLD_EXPIRED even before the expiry job has run; a charge that is
not AUTHORIZED is CHARGE_NOT_AUTHORIZED. The idempotency key is scoped to the charge's user.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.charge_status import ChargeEvent, ChargeStatus
from engine.domain.commands import CaptureCommand
from engine.domain.holds import capture_exceeds
from engine.domain.ledger import TransactionType
from engine.domain.money import require_non_negative_amount
from engine.domain.results import ChargeStateResult
from engine.domain.validation import require_idempotency_key, require_reference
from engine.service.context import EngineContext
from engine.service.holds import AUTHORIZED, hold_expired, is_expired, not_authorized, resolve_hold
from engine.service.idempotent import execute_idempotent
from engine.service.refund import charge_not_found, owner_of_charge, shard_of_charge
from engine.storage.charges import charge_view, lock_charge, read_charge_row


def validate_capture(command: CaptureCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("charge_id", command.charge_id, required=True)
    require_non_negative_amount("amount", command.amount)


def capture(context: EngineContext, command: CaptureCommand) -> ChargeStateResult:
    validate_capture(command)
    return execute_idempotent(
        context,
        shard=shard_of_charge(context, command.charge_id),
        key=command.idempotency_key,
        operation="Capture",
        command=command,
        result_type=ChargeStateResult,
        owner=owner_of_charge(command.charge_id),
        effect=lambda connection, now_us: _capture(context, connection, command, now_us),
    )


def _capture(
    context: EngineContext, connection: Connection, command: CaptureCommand, now_us: int
) -> ChargeStateResult:
    row = lock_charge(connection, command.charge_id)
    if row is None:
        raise charge_not_found(command.charge_id)
    if row.status == ChargeStatus.EXPIRED or (row.status == AUTHORIZED and is_expired(row, now_us)):
        raise hold_expired(row)
    if row.status != AUTHORIZED:
        raise not_authorized(row)
    amount = command.amount or row.authorized_amount
    if amount > row.authorized_amount:
        raise capture_exceeds(amount, row.authorized_amount, row.charge_id)
    resolve_hold(
        context,
        connection,
        row,
        capture_amount=amount,
        event=ChargeEvent.CAPTURE,
        transaction_type=TransactionType.CAPTURE,
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=f"capture {amount} of {row.authorized_amount}",
    )
    fresh = read_charge_row(connection, row.charge_id)
    if fresh is None:
        raise charge_not_found(row.charge_id)
    return ChargeStateResult(charge=charge_view(connection, fresh))
