"""Resolving an authorization — Capture, Void or hold expiry — at most once.

The caller has locked the charge row (``lock_charge``); the status change is
:func:`engine.storage.charges.change_status`, a conditional ``UPDATE ... WHERE status =
'AUTHORIZED'`` by the domain's table, so whichever of Capture, Void and the expiry job commits
first wins and the others see a charge that is no longer AUTHORIZED.

The split between captured and released is :func:`engine.domain.holds.split_resolution`; the
legs move through :func:`engine.legs.resolve_all`, in the engine's lock order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from engine.domain import ids
from engine.domain.charge_status import ChargeEvent, ChargeStatus
from engine.domain.errors import CofferError, Reason
from engine.domain.holds import earning_base, split_resolution
from engine.domain.ledger import Posting, TransactionType
from engine.domain.refund_allocation import LegBalance
from engine.legs import LegScope, resolve_all
from engine.service.context import EngineContext
from engine.service.points_grants import earn_points
from engine.storage.charges import change_status, read_legs
from engine.storage.ledger import append_transaction

__all__ = ["AUTHORIZED", "hold_expired", "is_expired", "not_authorized", "resolve_hold"]

AUTHORIZED = ChargeStatus.AUTHORIZED


def not_authorized(row: Row[Any]) -> CofferError:
    return CofferError(
        Reason.CHARGE_NOT_AUTHORIZED,
        f"charge {row.charge_id} is {row.status}, not AUTHORIZED",
        metadata={"charge_id": row.charge_id, "status": row.status},
    )


def hold_expired(row: Row[Any]) -> CofferError:
    return CofferError(
        Reason.HOLD_EXPIRED,
        f"the hold of charge {row.charge_id} has expired",
        metadata={"charge_id": row.charge_id, "status": row.status},
    )


def is_expired(row: Row[Any], now_us: int) -> bool:
    return row.hold_expires_at_us is not None and row.hold_expires_at_us <= now_us


def resolve_hold(
    context: EngineContext,
    connection: Connection,
    row: Row[Any],
    *,
    capture_amount: int,
    event: ChargeEvent,
    transaction_type: TransactionType,
    now_us: int,
    idempotency_key: str = "",
    memo: str = "",
) -> str:
    """Capture ``capture_amount`` of the locked AUTHORIZED charge ``row`` and release the rest
    (``capture_amount = 0``: release everything), moving it by ``event``. Returns the
    transaction id."""
    if (
        change_status(
            connection,
            row.charge_id,
            AUTHORIZED,
            event,
            now_us,
            captured_amount=capture_amount,
            released_amount=row.authorized_amount - capture_amount,
        )
        is None
    ):
        raise not_authorized(row)
    splits = split_resolution(
        capture_amount,
        [
            LegBalance(leg.leg_index, leg.kind, leg.instrument, leg.value, leg.units)
            for leg in read_legs(connection, row.charge_id)
        ],
        captured=event is ChargeEvent.CAPTURE,
    )
    posting = Posting()
    scope = LegScope(connection, row.user_id, row.charge_id, row.merchant_id, now_us, posting)
    resolve_all(scope, splits)
    transaction_id = ids.new_transaction_id(context.router.virtual_shard_of_user(row.user_id), now_us)
    if capture_amount > 0:
        earn_points(context, scope, transaction_id=transaction_id, base=earning_base(splits))
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=row.user_id,
        transaction_type=transaction_type,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=idempotency_key,
        charge_id=row.charge_id,
        memo=memo,
    )
    return transaction_id
