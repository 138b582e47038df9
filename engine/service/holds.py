"""Resolving an authorization — Capture, Void or hold expiry — at most once.

The caller has locked the charge row (``lock_charge``); the status change is a conditional
``UPDATE ... WHERE status = 'AUTHORIZED'``, so whichever of Capture, Void and the expiry job
commits first wins and the others see a charge that is no longer AUTHORIZED.

Lock order, as in a charge: the charge row, coupons (the coupon hooks), gift cards (sorted by
code), then the CASH, COINS and POINTS balances, then the points lots.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from engine.domain import ids
from engine.domain.errors import CofferError, Reason
from engine.domain.holds import LegSplit, split_capture
from engine.domain.ledger import Posting, TransactionType
from engine.domain.refund_allocation import LegBalance
from engine.service.context import EngineContext
from engine.service.coupon_legs import release_coupons, settle_coupons
from engine.service.gift_card_legs import release_gift_card, settle_gift_card
from engine.service.legs import LegMove, LegScope, release, settle
from engine.service.points_grants import earn_points
from engine.storage.charges import read_legs
from engine.storage.ledger import append_transaction
from engine.storage.schema import charge_legs, charges

AUTHORIZED = "AUTHORIZED"
_KIND_ORDER = {"GIFT_CARD": 0, "CASH": 1, "COINS": 2, "POINTS": 3}


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
    status: str,
    transaction_type: TransactionType,
    now_us: int,
    idempotency_key: str = "",
    memo: str = "",
) -> str:
    """Capture ``capture_amount`` of the locked AUTHORIZED charge ``row`` and release the rest
    (``capture_amount = 0``: release everything), setting ``status``. Returns the transaction id.
    """
    released_amount = row.authorized_amount - capture_amount
    updated = connection.execute(
        charges.update()
        .where(charges.c.charge_id == row.charge_id, charges.c.status == AUTHORIZED)
        .values(
            status=status,
            captured_amount=capture_amount,
            released_amount=released_amount,
            updated_at_us=now_us,
        )
    )
    if updated.rowcount != 1:
        raise not_authorized(row)

    legs = [leg for leg in read_legs(connection, row.charge_id) if leg.kind != "COUPON"]
    splits = split_capture(
        capture_amount,
        [LegBalance(leg.leg_index, leg.kind, leg.instrument, leg.value, leg.units) for leg in legs],
    )
    posting = Posting()
    scope = LegScope(connection, row.user_id, row.charge_id, row.merchant_id, now_us, posting)
    # By status, not amount: an authorization its coupons paid entirely captures 0 and still
    # uses its coupons.
    if status == "CAPTURED":
        settle_coupons(scope, row.charge_id)
    else:
        release_coupons(scope, row.charge_id)
    for split in sorted(splits, key=lambda item: (_KIND_ORDER[item.kind], item.instrument)):
        _apply(scope, split)
        connection.execute(
            charge_legs.update()
            .where(charge_legs.c.charge_id == row.charge_id, charge_legs.c.leg_index == split.leg_index)
            .values(
                captured_value=split.captured_value,
                captured_units=split.captured_units,
                released_value=split.released_value,
                released_units=split.released_units,
            )
        )
    transaction_id = ids.new_id("tx", context.router.virtual_shard_of_user(row.user_id), now_us // 1000)
    if capture_amount > 0:
        earned_on = sum(split.captured_value for split in splits if split.kind != "POINTS")
        earn_points(context, scope, transaction_id=transaction_id, base=earned_on)
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


def _apply(scope: LegScope, split: LegSplit) -> None:
    captured = LegMove(split.kind, split.instrument, split.captured_value, split.captured_units)
    released = LegMove(split.kind, split.instrument, split.released_value, split.released_units)
    if split.kind == "GIFT_CARD":
        if captured.value:
            settle_gift_card(scope, captured)
        if released.value:
            release_gift_card(scope, released)
        return
    if captured.units:
        settle(scope, captured)
    if released.units:
        release(scope, released)
