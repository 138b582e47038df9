"""Refund: give captured value back, partially or fully, many times, never more than captured.

Value returns cash first, then gift cards, coins and points (:mod:`engine.domain.refund_allocation`);
points go back to the lots they came from.
"""

from __future__ import annotations

from sqlalchemy import Connection, Row

from engine.domain import ids
from engine.domain.charge_status import REFUNDABLE_STATUSES, ChargeEvent, ChargeStatus, refund_event
from engine.domain.commands import RefundCommand
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.ledger import Posting, TransactionType
from engine.domain.money import require_non_negative_amount
from engine.domain.refund_allocation import LegBalance, allocate_refund, item_refund_value, refund_breakdown
from engine.domain.results import RefundResult
from engine.domain.serialization import dumps
from engine.domain.validation import (
    MAX_ITEMS_PER_CHARGE,
    require_idempotency_key,
    require_reference,
    require_text,
)
from engine.legs import LegScope, give_back_all
from engine.service.context import EngineContext
from engine.service.idempotent import execute_idempotent
from engine.service.points_grants import claw_back_points
from engine.storage.charges import (
    add_item_refund,
    change_status,
    charge_view,
    insert_refund,
    lock_charge,
    read_charge_row,
    read_items,
    read_legs,
)
from engine.storage.ledger import append_transaction
from engine.storage.router import Shard
from engine.storage.wallets import read_wallet_balances

__all__ = [
    "charge_not_found",
    "other_merchant",
    "owner_of_charge",
    "refund",
    "shard_of_charge",
    "validate_refund",
]


def validate_refund(command: RefundCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("charge_id", command.charge_id, required=True)
    require_text("reason", command.reason)
    if command.items:
        if len(command.items) > MAX_ITEMS_PER_CHARGE:
            raise invalid_argument("items", f"at most {MAX_ITEMS_PER_CHARGE} items")
        require_non_negative_amount("amount", command.amount)
        seen: set[str] = set()
        for index, item in enumerate(command.items):
            require_reference(f"items[{index}].sku", item.sku, required=True)
            if item.quantity <= 0:
                raise invalid_argument(f"items[{index}].quantity", "must be greater than zero")
            # Each line is valued once against its refunded-so-far state: a SKU named twice would
            # be valued twice against the same state, so its quantities must come summed.
            if item.sku in seen:
                raise invalid_argument(f"items[{index}].sku", "is named twice; sum its quantities")
            seen.add(item.sku)
    else:
        # 0 is accepted only for a charge with nothing paid left to refund (_coupons_only), which
        # a malformed charge id cannot name.
        require_non_negative_amount("amount", command.amount)
        if command.amount == 0 and ids.id_prefix(command.charge_id) is None:
            raise invalid_argument("amount", "must be greater than zero")


def charge_not_found(charge_id: str) -> CofferError:
    return CofferError(
        Reason.CHARGE_NOT_FOUND,
        f"no charge {charge_id!r}",
        metadata={"charge_id": charge_id, "field": "charge_id"},
    )


def shard_of_charge(context: EngineContext, charge_id: str) -> Shard:
    shard = context.router.for_id(charge_id)
    if shard is None:
        raise charge_not_found(charge_id)
    return shard


def owner_of_charge(charge_id: str, merchant_scope: str | None = None):  # type: ignore[no-untyped-def]
    """The charge's user, found inside the transaction before the key is claimed. With a
    ``merchant_scope`` (a till caller) a charge of another merchant is refused here, so the
    refusal claims no key and a replayed key cannot skip the check."""

    def owner(connection: Connection) -> int:
        row = read_charge_row(connection, charge_id)
        if row is None:
            raise charge_not_found(charge_id)
        if merchant_scope is not None and row.merchant_id != merchant_scope:
            raise other_merchant(charge_id)
        return int(row.user_id)

    return owner


def other_merchant(charge_id: str) -> CofferError:
    # A charge's merchant never changes, so reading it without a row lock is enough.
    return CofferError(
        Reason.ROLE_FORBIDDEN,
        f"charge {charge_id!r} belongs to another merchant than this caller's",
        metadata={"charge_id": charge_id, "field": "charge_id"},
    )


def refund(context: EngineContext, command: RefundCommand) -> RefundResult:
    validate_refund(command)
    return execute_idempotent(
        context,
        shard=shard_of_charge(context, command.charge_id),
        key=command.idempotency_key,
        operation="Refund",
        command=command,
        result_type=RefundResult,
        owner=owner_of_charge(command.charge_id, command.merchant_scope),
        effect=lambda connection, now_us: _refund(context, connection, command, now_us),
    )


def _items_value(connection: Connection, command: RefundCommand) -> int:
    """The paid share of the refunded items; marks them refunded."""
    lines = {row.sku: row for row in read_items(connection, command.charge_id)}
    total = 0
    for index, item in enumerate(command.items):
        line = lines.get(item.sku)
        if line is None:
            raise invalid_argument(f"items[{index}].sku", "is not a line of this charge")
        if item.quantity > line.quantity - line.refunded_quantity:
            raise CofferError(
                Reason.REFUND_EXCEEDS_CAPTURED,
                f"only {line.quantity - line.refunded_quantity} of {item.sku} are left to refund",
                metadata={"field": f"items[{index}].quantity", "sku": item.sku},
            )
        value = item_refund_value(
            paid_share=line.unit_price * line.quantity - line.discount_share,
            quantity=line.quantity,
            refunded_quantity=line.refunded_quantity,
            refunded_value=line.refunded_value,
            refund_quantity=item.quantity,
        )
        add_item_refund(connection, command.charge_id, line.line_index, item.quantity, value)
        total += value
    return total


def _refund(
    context: EngineContext, connection: Connection, command: RefundCommand, now_us: int
) -> RefundResult:
    row = lock_charge(connection, command.charge_id)
    if row is None:
        raise charge_not_found(command.charge_id)
    if row.status not in REFUNDABLE_STATUSES:
        if row.status == ChargeStatus.REFUNDED:
            raise _exceeds(row, command.amount)
        raise CofferError(
            Reason.CHARGE_NOT_CAPTURED,
            f"charge {row.charge_id} is {row.status}; only captured value can be refunded",
            metadata={"charge_id": row.charge_id, "status": row.status},
        )
    amount = command.amount
    if command.items:
        items_value = _items_value(connection, command)
        if amount not in (0, items_value):
            raise invalid_argument("amount", f"must be 0 or the items' paid share {items_value}")
        amount = items_value
        if amount == 0 and not _coupons_only(row):
            raise invalid_argument("items", "the items' paid share is zero")
    elif amount == 0 and not _coupons_only(row):
        raise invalid_argument("amount", "must be greater than zero")
    refundable = row.captured_amount - row.refunded_amount
    if amount > refundable:
        raise _exceeds(row, amount)

    refunded_total = row.refunded_amount + amount
    event = refund_event(refunded_total, row.captured_amount)
    returns = allocate_refund(
        amount,
        [
            LegBalance(
                leg.leg_index,
                leg.kind,
                leg.instrument,
                leg.captured_value - leg.refunded_value,
                leg.captured_units - leg.refunded_units,
            )
            for leg in read_legs(connection, row.charge_id)
        ],
        completes_order=event is ChargeEvent.FULL_REFUND,
    )
    posting = Posting()
    scope = LegScope(connection, row.user_id, row.charge_id, row.merchant_id, now_us, posting)
    give_back_all(scope, returns)
    if (
        change_status(
            connection,
            row.charge_id,
            ChargeStatus(row.status),
            event,
            now_us,
            refunded_amount=refunded_total,
            refunded_before=row.refunded_amount,
        )
        is None
    ):
        raise CofferError(Reason.CONTENTION, "the charge changed during the refund; retry")
    # Points this order earned go back in proportion to what has now been refunded.
    claw_back_points(scope, row, refunded_total)

    virtual_shard = context.router.virtual_shard_of_user(row.user_id)
    refund_id = ids.new_id("rf", virtual_shard, now_us // 1000)
    transaction_id = ids.new_transaction_id(virtual_shard, now_us)
    breakdown = refund_breakdown(returns)
    insert_refund(
        connection,
        refund_id=refund_id,
        charge_id=row.charge_id,
        user_id=row.user_id,
        amount=amount,
        reason=command.reason,
        breakdown=dumps(breakdown),
        transaction_id=transaction_id,
        now_us=now_us,
    )
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=row.user_id,
        transaction_type=TransactionType.REFUND,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        charge_id=row.charge_id,
        memo=command.reason,
    )
    fresh = read_charge_row(connection, row.charge_id)
    if fresh is None:
        raise charge_not_found(row.charge_id)
    return RefundResult(
        refund_id=refund_id,
        charge=charge_view(connection, fresh),
        wallet=read_wallet_balances(connection, row.user_id, now_us),
        breakdown=breakdown,
    )


def _coupons_only(row: Row) -> bool:  # type: ignore[type-arg]
    """Nothing paid is left to refund but the order is not refunded: a till coupon redemption,
    or an order its coupons paid entirely. A refund of 0 then refunds the whole order, which
    gives its coupons back per the state table (docs/coupons.md)."""
    return bool(row.captured_amount == row.refunded_amount and row.discount > 0)


def _exceeds(row: Row, amount: int) -> CofferError:  # type: ignore[type-arg]
    return CofferError(
        Reason.REFUND_EXCEEDS_CAPTURED,
        f"refunding {amount} would pass the {row.captured_amount} captured on {row.charge_id}",
        metadata={
            "charge_id": row.charge_id,
            "captured": str(row.captured_amount),
            "refunded": str(row.refunded_amount),
            "field": "amount",
        },
    )
