"""QuoteCharge: a Charge request answered without effect.

1. The request as given: the same planning code as Charge (:func:`engine.service.charge.plan_for`)
   plus the checks Charge makes before taking money (frozen wallet, the order already charged,
   enough cash, coins and live points) — its breakdown, or the reason Charge would refuse it.
2. The best coupon choice for the cart among the user's coupons (those ACTIVATED, LOCKED or
   FROZEN, and any the request names): the largest total discount under the stacking rules
   (:mod:`engine.domain.coupons.search`), with the breakdown it would give and, for every other
   coupon, the CONTRACT §4 reason it was left out.

Everything runs in one transaction on the user's shard that is always rolled back: no key is
claimed and nothing is written. (It is not a READ ONLY transaction because planning takes the
same row locks Charge takes — coupons, then gift cards — so the quote sees exactly what Charge
would; those locks last only as long as the quote.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Connection, Row

from engine.domain.charge_plan import ChargePlan, plan_charge
from engine.domain.commands import ChargeCommand
from engine.domain.coupons.messages import CouponRejectionView, QuoteResult
from engine.domain.coupons.search import Candidate, Choice, best_combination
from engine.domain.coupons.states import unusable_reason
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.domain.points_fifo import draw_points
from engine.domain.results import Breakdown, InstrumentAmount
from engine.domain.validation import MAX_COUPONS_PER_CHARGE
from engine.legs.coupon import charge_cart
from engine.legs.gift_card import resolve_gift_cards
from engine.service.charge import plan_for, validate_charge
from engine.service.context import EngineContext
from engine.storage.accounts import require_not_frozen
from engine.storage.balances import insufficient_funds, read_balances
from engine.storage.charges import live_charge_for_order
from engine.storage.coupon_templates import read_templates
from engine.storage.coupons import read_coupon, read_live_coupons, state_now
from engine.storage.database import read_only
from engine.storage.lots import read_spendable_lots
from engine.storage.unit_of_work import run_transaction

#: A quote needs no idempotency key; this stands in for a missing one during validation.
_PLACEHOLDER_KEY = "quote"


def quote_charge(context: EngineContext, command: ChargeCommand) -> QuoteResult:
    validate_charge(
        command if command.idempotency_key else dataclasses.replace(command, idempotency_key=_PLACEHOLDER_KEY)
    )
    shard = context.router.for_user(command.user_id)

    def attempt() -> QuoteResult:
        with read_only(shard.engine) as connection:
            transaction = connection.begin()
            try:
                return _quote(context, connection, command, context.now_us())
            finally:
                transaction.rollback()

    return run_transaction(attempt, attempts=context.settings.transaction_attempts)


def _quote(
    context: EngineContext, connection: Connection, command: ChargeCommand, now_us: int
) -> QuoteResult:
    breakdown: Breakdown | None = None
    error_reason = ""
    error_detail = ""
    try:
        breakdown = _as_given(context, connection, command, now_us).breakdown()
    except CofferError as error:
        error_reason = error.reason.label
        error_detail = error.message
    rejected, candidates = _candidates(connection, command, now_us)
    choice = best_combination(charge_cart(command), candidates, max_coupons=MAX_COUPONS_PER_CHARGE)
    rejected += [
        CouponRejectionView(coupon_id, rejection.reason.label, rejection.detail)
        for coupon_id, rejection in choice.rejected
    ]
    return QuoteResult(
        breakdown=breakdown,
        error_reason=error_reason,
        error_detail=error_detail,
        best_coupon_ids=choice.coupon_ids,
        best_breakdown=_best_breakdown(context, connection, command, choice, now_us),
        rejected=tuple(rejected),
    )


def _as_given(
    context: EngineContext, connection: Connection, command: ChargeCommand, now_us: int
) -> ChargePlan:
    require_not_frozen(connection, command.user_id)
    existing = live_charge_for_order(connection, command.user_id, command.merchant_id, command.order_id)
    if existing is not None:
        raise CofferError(
            Reason.ORDER_ALREADY_CHARGED,
            f"order {command.order_id} at {command.merchant_id} already has a live charge",
            metadata={
                "order_id": command.order_id,
                "merchant_id": command.merchant_id,
                "charge_id": existing,
            },
        )
    plan = plan_for(context, connection, command, now_us)
    balances = read_balances(connection, command.user_id)
    for asset, needed in ((Asset.CASH, plan.cash_amount), (Asset.COINS, plan.coins_used)):
        if needed > balances.get(asset, (0, 0))[0]:
            raise insufficient_funds(asset, needed)
    if plan.points_used:
        lots = read_spendable_lots(connection, command.user_id, now_us)
        if draw_points(lots, plan.points_used, now_us) is None:
            raise insufficient_funds(Asset.POINTS, plan.points_used)
    return plan


def _candidates(
    connection: Connection, command: ChargeCommand, now_us: int
) -> tuple[list[CouponRejectionView], list[Candidate]]:
    """The user's coupons worth judging against this cart: usable ones as candidates, the rest
    rejected with the reason a charge naming them would get."""
    rows: dict[str, Row[Any]] = {}
    rejected: list[CouponRejectionView] = []
    for coupon_id in command.coupon_ids:
        row = read_coupon(connection, coupon_id)
        if row is None or row.user_id != command.user_id:
            rejected.append(
                CouponRejectionView(coupon_id, Reason.COUPON_NOT_FOUND.label, "no such coupon in this wallet")
            )
        else:
            rows[coupon_id] = row
    for row in read_live_coupons(connection, command.user_id):
        rows.setdefault(row.coupon_id, row)
    templates = read_templates(connection, [row.template_id for row in rows.values()])
    candidates: list[Candidate] = []
    for coupon_id, row in rows.items():
        state = state_now(row, now_us)
        reason = unusable_reason(state)
        template = templates.get(row.template_id)
        if reason is not None or template is None:
            rejected.append(
                CouponRejectionView(
                    coupon_id, (reason or Reason.COUPON_NOT_FOUND).label, f"the coupon is {state.value}"
                )
            )
        else:
            candidates.append(Candidate(coupon_id, template.rules, row.expires_at_us))
    return rejected, candidates


def _best_breakdown(
    context: EngineContext, connection: Connection, command: ChargeCommand, choice: Choice, now_us: int
) -> Breakdown:
    """The best choice with the request's own points, coins and gift cards; when those would
    not fit (e.g. more points than the smaller remainder allows), the coupons alone."""
    discounts = [
        InstrumentAmount(coupon_id, discount)
        for coupon_id, discount in zip(choice.coupon_ids, choice.discounts, strict=True)
    ]
    try:
        return plan_charge(
            amount=command.amount,
            coupon_discounts=discounts,
            points=command.points,
            coins=command.coins,
            gift_card_available=resolve_gift_cards(connection, command, now_us),
            policy=context.points_policy,
        ).breakdown()
    except CofferError:
        return plan_charge(
            amount=command.amount,
            coupon_discounts=discounts,
            points=0,
            coins=0,
            gift_card_available=[],
            policy=context.points_policy,
        ).breakdown()
