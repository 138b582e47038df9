"""Charge: pay an order from coupons, points, coins, gift cards and cash — all legs or none.

Immediate charges capture at once; ``authorize_only`` holds every leg until Capture or Void.
"""

from __future__ import annotations

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from engine.domain import ids
from engine.domain.charge_plan import ChargePlan, plan_charge
from engine.domain.charge_status import ChargeStatus
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.ledger import Posting, TransactionType
from engine.domain.leg_kind import LegKind
from engine.domain.money import require_non_negative_amount, require_positive_amount
from engine.domain.results import ChargeResult
from engine.domain.serialization import dumps
from engine.domain.time_units import MICROSECONDS_PER_SECOND
from engine.domain.validation import (
    MAX_COUPONS_PER_CHARGE,
    MAX_GIFT_CARDS_PER_CHARGE,
    MAX_ITEMS_PER_CHARGE,
    require_idempotency_key,
    require_reference,
    require_user_id,
)
from engine.legs import LegMove, LegScope, take_all
from engine.legs.coupon import coupon_line_shares, resolve_coupon_discounts
from engine.legs.gift_card import resolve_gift_cards
from engine.service.context import EngineContext
from engine.service.idempotent import execute_for_user
from engine.service.points_grants import earn_points
from engine.storage.accounts import require_not_frozen
from engine.storage.charges import ORDER_CHARGE_KIND, NewCharge, insert_charge, insert_items, insert_legs
from engine.storage.ledger import append_transaction
from engine.storage.wallets import read_wallet_balances

__all__ = ["charge", "plan_for", "validate_charge"]


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
    return execute_for_user(
        context,
        command,
        operation="Charge",
        result_type=ChargeResult,
        effect=lambda connection, now_us: _charge(context, connection, command, now_us),
    )


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
            NewCharge(
                charge_id=charge_id,
                user_id=user_id,
                kind=ORDER_CHARGE_KIND,
                order_id=command.order_id,
                merchant_id=command.merchant_id,
                channel_id=command.channel_id,
                amount=command.amount,
                discount=plan.discount,
                points_used=plan.points_used,
                points_value=plan.points_value,
                coins_used=plan.coins_used,
                gift_card_amount=plan.gift_card_amount,
                cash_amount=plan.cash_amount,
                authorized_amount=plan.paid_amount,
                captured_amount=0 if hold else plan.paid_amount,
                status=status,
                hold_expires_at_us=hold_expires_at_us,
                transaction_id=transaction_id,
                breakdown=dumps(plan.breakdown()),
                created_at_us=now_us,
            ),
        )
    except IntegrityError as error:
        if "ux_charges_live_order" in str(error.orig) or "charges.user_id" in str(error.orig):
            raise _order_already_charged(command) from error
        raise

    posting = Posting()
    scope = LegScope(connection, user_id, charge_id, command.merchant_id, now_us, posting)
    legs = legs_of(plan)
    # Each item's share of the discount, spread over the lines each coupon applies to.
    discount_shares = coupon_line_shares(connection, plan, command, now_us)
    take_all(scope, legs, hold=hold)
    insert_legs(
        connection,
        charge_id,
        [
            {
                "leg_index": index,
                "kind": leg.kind.value,
                "instrument": leg.instrument,
                "value": leg.value,
                "units": leg.units,
                "captured_value": 0 if hold else leg.value,
                "captured_units": 0 if hold else leg.units,
            }
            for index, leg in enumerate(legs)
        ],
    )
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
        memo=f"order {command.order_id} at {command.merchant_id}",
    )
    return ChargeResult(
        charge_id=charge_id,
        status=status,
        breakdown=plan.breakdown(),
        wallet=read_wallet_balances(connection, user_id, now_us),
        transaction_id=transaction_id,
    )


def legs_of(plan: ChargePlan) -> list[LegMove]:
    """Every leg in charge order — coupons, points, coins, gift cards (as listed), cash — which
    is also their ``leg_index`` order."""
    legs = [
        LegMove(LegKind.COUPON, item.instrument, item.amount, item.amount) for item in plan.coupon_discounts
    ]
    if plan.points_used:
        legs.append(LegMove(LegKind.POINTS, "", plan.points_value, plan.points_used))
    if plan.coins_used:
        legs.append(LegMove(LegKind.COINS, "", plan.coins_used, plan.coins_used))
    for draw in plan.gift_cards:
        legs.append(LegMove(LegKind.GIFT_CARD, draw.instrument, draw.amount, draw.amount))
    if plan.cash_amount:
        legs.append(LegMove(LegKind.CASH, "", plan.cash_amount, plan.cash_amount))
    return legs


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


def _order_already_charged(command: ChargeCommand) -> CofferError:
    return CofferError(
        Reason.ORDER_ALREADY_CHARGED,
        f"order {command.order_id} at {command.merchant_id} already has a live charge",
        metadata={"order_id": command.order_id, "merchant_id": command.merchant_id},
    )
