"""Charge: pay an order from coupons, points, coins, gift cards and cash — all legs or none.

Immediate charges capture at once; ``authorize_only`` holds every leg until Capture or Void.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from engine.domain import ids
from engine.domain.charge_plan import ChargePlan, plan_charge
from engine.domain.charge_status import ChargeStatus
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, invalid_argument
from engine.domain.ledger import Posting, TransactionType
from engine.domain.money import require_non_negative_amount, require_positive_amount
from engine.domain.results import ChargeResult
from engine.domain.time_units import MICROSECONDS_PER_SECOND
from engine.domain.validation import (
    MAX_COUPONS_PER_CHARGE,
    MAX_GIFT_CARDS_PER_CHARGE,
    MAX_ITEMS_PER_CHARGE,
    require_idempotency_key,
    require_reference,
    require_user_id,
)
from engine.legs import LegScope, take_all
from engine.legs.coupon import coupon_line_shares, resolve_coupon_discounts
from engine.legs.gift_card import resolve_gift_cards
from engine.security.identity import Caller
from engine.service.audit_trail import acting_caller
from engine.service.cash_charges import cash_charge, charge_one_cash, is_cash_only, joinable_cash_charge
from engine.service.charge_parts import charge_memo, leg_rows, legs_of, new_charge_row, order_already_charged
from engine.service.context import EngineContext
from engine.service.group_commit import Joinable
from engine.service.idempotent import execute_for_user
from engine.service.points_grants import earn_points
from engine.storage.accounts import require_not_frozen
from engine.storage.charges import insert_charge, insert_items, insert_legs, is_live_order_conflict
from engine.storage.ledger import append_transaction
from engine.storage.wallets import read_wallet_balances

T = TypeVar("T")

__all__ = ["charge", "charge_joinable", "plan_for", "validate_charge"]


def validate_charge(command: ChargeCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    require_reference("order_id", command.order_id, required=True)
    require_reference("merchant_id", command.merchant_id, required=True)
    require_reference("channel_id", command.channel_id, required=False)
    require_reference("business_line", command.business_line, required=False)
    require_positive_amount("amount", command.amount)
    require_non_negative_amount("points", command.points)
    require_non_negative_amount("coins", command.coins)
    if len(command.items) > MAX_ITEMS_PER_CHARGE:
        raise invalid_argument("items", f"at most {MAX_ITEMS_PER_CHARGE} items per charge")
    if len(command.coupon_ids) > MAX_COUPONS_PER_CHARGE:
        raise invalid_argument("coupon_ids", f"at most {MAX_COUPONS_PER_CHARGE} coupons per charge")
    if len(set(command.coupon_ids)) != len(command.coupon_ids):
        raise invalid_argument("coupon_ids", "a coupon is named twice")
    if len(command.gift_card_codes) > MAX_GIFT_CARDS_PER_CHARGE:
        raise invalid_argument(
            "gift_card_codes", f"at most {MAX_GIFT_CARDS_PER_CHARGE} gift cards per charge"
        )
    if len(set(command.gift_card_codes)) != len(command.gift_card_codes):
        raise invalid_argument("gift_card_codes", "a gift card is named twice")
    if command.items:
        total = 0
        skus: set[str] = set()
        for index, item in enumerate(command.items):
            require_reference(f"items[{index}].sku", item.sku, required=True)
            # Refunds name lines by SKU, so a SKU is one line (its quantities summed).
            if item.sku in skus:
                raise invalid_argument(f"items[{index}].sku", "is on two lines; sum its quantities")
            skus.add(item.sku)
            if item.unit_price < 0:
                raise invalid_argument(f"items[{index}].unit_price", "must not be negative")
            if item.quantity <= 0:
                raise invalid_argument(f"items[{index}].quantity", "must be greater than zero")
            require_non_negative_amount(f"items[{index}].unit_price", item.unit_price)
            require_non_negative_amount(f"items[{index}].quantity", item.quantity)
            total += item.total
        if total != command.amount:
            raise invalid_argument("items", f"items sum to {total}, not the amount {command.amount}")


def charge(context: EngineContext, command: ChargeCommand) -> ChargeResult:
    validate_charge(command)
    if is_cash_only(context, command):
        # The one path of a cash-only charge, alone or with its batch's others.
        return charge_one_cash(context, cash_charge(command, acting_caller()))
    return execute_for_user(
        context,
        command,
        operation="Charge",
        result_type=ChargeResult,
        effect=lambda connection, now_us: _charge(context, connection, command, now_us),
    )


def charge_joinable(
    context: EngineContext, command: ChargeCommand, caller: Caller | None, answer: Callable[[ChargeResult], T]
) -> Joinable | None:
    """How a group-commit writer may apply ``command`` with its neighbours: a valid cash-only
    charge joins the others queued with it (engine.service.cash_charges); anything else
    (``None``) runs alone, where a bad request gets its refusal."""
    try:
        validate_charge(command)
    except CofferError:
        return None
    if not is_cash_only(context, command):
        return None
    return joinable_cash_charge(context, command, caller, answer)


def plan_for(
    context: EngineContext, connection: Connection, command: ChargeCommand, now_us: int
) -> ChargePlan:
    """The legs this charge would take now (also what QuoteCharge shows)."""
    coupon_discounts = resolve_coupon_discounts(connection, command, now_us)
    gift_cards = resolve_gift_cards(connection, command, now_us)
    return plan_charge(
        amount=command.amount,
        coupon_discounts=coupon_discounts,
        points=command.points,
        coins=command.coins,
        gift_card_available=gift_cards,
        policy=context.points_policy,
    )


def _charge(
    context: EngineContext, connection: Connection, command: ChargeCommand, now_us: int
) -> ChargeResult:
    user_id = command.user_id
    require_not_frozen(connection, user_id)

    plan = plan_for(context, connection, command, now_us)
    virtual_shard = context.router.virtual_shard_of_user(user_id)
    charge_id = ids.new_id("ch", virtual_shard, now_us // 1000)
    transaction_id = ids.new_transaction_id(virtual_shard, now_us)
    hold = command.authorize_only
    status = ChargeStatus.AUTHORIZED if hold else ChargeStatus.CAPTURED
    hold_expires_at_us = (
        now_us + context.settings.hold_ttl_seconds * MICROSECONDS_PER_SECOND if hold else None
    )

    # The charge row first: the live-order unique index refuses a second live charge for the
    # order here (a concurrent twin waits for the first to commit, then is refused), so no
    # separate look-up is needed on the hot path.
    try:
        insert_charge(
            connection,
            new_charge_row(
                command,
                plan,
                charge_id=charge_id,
                transaction_id=transaction_id,
                now_us=now_us,
                hold_expires_at_us=hold_expires_at_us,
            ),
        )
    except IntegrityError as error:
        if is_live_order_conflict(error):
            raise order_already_charged(command) from error
        raise

    posting = Posting()
    scope = LegScope(connection, user_id, charge_id, command.merchant_id, now_us, posting)
    legs = legs_of(plan)
    # Each item's share of the discount, spread over the lines each coupon applies to.
    discount_shares = coupon_line_shares(connection, plan, command, now_us)
    take_all(scope, legs, hold=hold)
    insert_legs(connection, charge_id, leg_rows(legs, hold=hold))
    _insert_items(connection, charge_id, command, discount_shares)
    if not hold:
        # An immediate charge is captured at once: it earns points on what was not paid in points.
        earn_points(context, scope, transaction_id=transaction_id, base=plan.paid_amount - plan.points_value)
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.CHARGE,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        charge_id=charge_id,
        memo=charge_memo(command),
    )
    return ChargeResult(
        charge_id=charge_id,
        status=status,
        breakdown=plan.breakdown(),
        wallet=read_wallet_balances(connection, user_id, now_us),
        transaction_id=transaction_id,
    )


def _insert_items(
    connection: Connection, charge_id: str, command: ChargeCommand, discount_shares: tuple[int, ...]
) -> None:
    shares = discount_shares or tuple(0 for _ in command.items)
    insert_items(
        connection,
        charge_id,
        [
            {
                "line_index": index,
                "sku": line.sku,
                "category": line.category,
                "business_line": line.business_line or command.business_line,
                "unit_price": line.unit_price,
                "quantity": line.quantity,
                "discount_share": shares[index],
                "refunded_quantity": 0,
                "refunded_value": 0,
            }
            for index, line in enumerate(command.items)
        ],
    )
