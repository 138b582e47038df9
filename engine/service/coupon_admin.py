"""Admin.FreezeCoupon / UnfreezeCoupon: ACTIVATED ⇄ FROZEN through the state machine.

The coupon id carries its virtual shard, so the call routes without a lookup; the key is scoped
to the coupon's owner. Any other state (LOCKED, USED, EXPIRED — including an ACTIVATED coupon
past its validity —, an UNFREEZE of a coupon that is not FROZEN) is ILLEGAL_STATE_TRANSITION.
The change is journalled in ``coupon_events`` with the operator and reason.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.coupons.messages import CouponStateResult, FreezeCouponCommand
from engine.domain.coupons.states import CouponEvent
from engine.domain.errors import InvariantViolation
from engine.domain.validation import require_idempotency_key, require_reference, require_text
from engine.service.context import EngineContext
from engine.service.idempotent import execute_idempotent
from engine.storage.coupons import change_state, coupon_not_found, coupon_view, read_coupon


def set_coupon_frozen(context: EngineContext, command: FreezeCouponCommand) -> CouponStateResult:
    require_idempotency_key(command.idempotency_key)
    require_reference("coupon_id", command.coupon_id, required=True)
    require_text("reason", command.reason)
    require_reference("operator_id", command.operator_id, required=False)
    shard = context.router.for_id(command.coupon_id)
    if shard is None:
        raise coupon_not_found(command.coupon_id)

    def owner(connection: Connection) -> int:
        row = read_coupon(connection, command.coupon_id)
        if row is None:
            raise coupon_not_found(command.coupon_id)
        return int(row.user_id)

    def effect(connection: Connection, now_us: int) -> CouponStateResult:
        row = read_coupon(connection, command.coupon_id, lock=True)
        if row is None:
            raise coupon_not_found(command.coupon_id)
        event = CouponEvent.FREEZE if command.frozen else CouponEvent.UNFREEZE
        note = f"{command.operator_id}: {command.reason}" if command.operator_id else command.reason
        change_state(connection, row, event, now_us, reference=note)
        fresh = read_coupon(connection, command.coupon_id)
        if fresh is None:
            raise InvariantViolation(f"coupon {command.coupon_id} vanished")
        return CouponStateResult(coupon=coupon_view(fresh, now_us))

    return execute_idempotent(
        context,
        shard=shard,
        key=command.idempotency_key,
        operation="FreezeCoupon" if command.frozen else "UnfreezeCoupon",
        command=command,
        result_type=CouponStateResult,
        owner=owner,
        effect=effect,
    )
