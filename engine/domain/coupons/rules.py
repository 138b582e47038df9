"""Coupon rules and discount arithmetic, in exact integer fen.

* ``FIXED_OFF`` (满减): ``amount_off`` once the in-scope items reach ``min_spend`` (inclusive:
  满100减20 applies at exactly 100.00).
* ``PERCENT_OFF``: ``discount_bps`` of the in-scope items, rounded **down** (the user loses less
  than 1 fen to rounding), capped by ``max_discount`` (0 = no cap); an optional ``min_spend``.
* ``NO_THRESHOLD``: ``amount_off``, never more than the in-scope items.

Scope: a line is in scope when its category is among ``categories`` and its business line among
``business_lines`` (an empty list accepts everything); ``merchants`` is judged on the order's
merchant. An order without items is one line that every category and business-line scope accepts.

Stacking (:func:`apply_coupons`): any number of stackable coupons, or one non-stackable alone.
Every coupon is judged (min spend, percentage base) on the cart's original prices; its discount
is then capped by what earlier coupons left of its in-scope lines and spread over those lines in
proportion to what is left of each (remainder to the largest, :mod:`engine.domain.discount_allocation`).
So no line, and no order, is ever discounted below zero, and the per-line shares are what item
refunds later subtract from each line's price.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.commands import LineItem
from engine.domain.discount_allocation import allocate_discount
from engine.domain.errors import CofferError, Reason, require
from engine.domain.money import BPS_PER_WHOLE


class CouponType(enum.Enum):
    FIXED_OFF = "FIXED_OFF"
    PERCENT_OFF = "PERCENT_OFF"
    NO_THRESHOLD = "NO_THRESHOLD"


@dataclass(frozen=True)
class CouponScope:
    categories: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()
    business_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class CouponRules:
    type: CouponType
    amount_off: int = 0
    discount_bps: int = 0
    min_spend: int = 0
    #: PERCENT_OFF only; 0 means no cap.
    max_discount: int = 0
    scope: CouponScope = CouponScope()
    stackable: bool = False


@dataclass(frozen=True)
class CartLine:
    total: int
    category: str = ""
    business_line: str = ""
    #: The single implicit line of an order without items: every category/line scope accepts it.
    wildcard: bool = False


@dataclass(frozen=True)
class Cart:
    merchant_id: str
    lines: tuple[CartLine, ...]

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)


def cart_of(amount: int, items: Sequence[LineItem], merchant_id: str, business_line: str = "") -> Cart:
    """The cart a charge or a till redemption describes (items' own business line wins)."""
    if not items:
        return Cart(merchant_id, (CartLine(amount, "", business_line, wildcard=True),))
    return Cart(
        merchant_id,
        tuple(
            CartLine(item.unit_price * item.quantity, item.category, item.business_line or business_line)
            for item in items
        ),
    )


@dataclass(frozen=True)
class Rejection:
    """Why a coupon does not apply: a CONTRACT §4 reason and a sentence for people."""

    reason: Reason
    detail: str

    def error(self, coupon_id: str) -> CofferError:
        return CofferError(
            self.reason,
            f"coupon {coupon_id}: {self.detail}",
            metadata={"coupon_id": coupon_id, "field": "coupon_ids"},
        )


def line_in_scope(scope: CouponScope, line: CartLine) -> bool:
    if line.wildcard:
        return True
    if scope.categories and line.category not in scope.categories:
        return False
    return not (scope.business_lines and line.business_line not in scope.business_lines)


def in_scope_lines(scope: CouponScope, cart: Cart) -> list[int]:
    if scope.merchants and cart.merchant_id not in scope.merchants:
        return []
    return [index for index, line in enumerate(cart.lines) if line_in_scope(scope, line)]


def discount_on(rules: CouponRules, in_scope_total: int) -> int | Rejection:
    """What ``rules`` take off ``in_scope_total`` fen of in-scope items, before stacking caps."""
    require(in_scope_total >= 0, "an in-scope total is not negative")
    if in_scope_total < rules.min_spend:
        return Rejection(
            Reason.MIN_SPEND_NOT_MET,
            f"the in-scope items total {in_scope_total}, below the minimum spend of {rules.min_spend}",
        )
    if rules.type is CouponType.PERCENT_OFF:
        discount = (in_scope_total * rules.discount_bps) // BPS_PER_WHOLE
        if rules.max_discount:
            discount = min(discount, rules.max_discount)
    else:
        discount = min(rules.amount_off, in_scope_total)
    if discount <= 0:
        return Rejection(Reason.COUPON_NOT_APPLICABLE, "it takes nothing off these items")
    return discount


def evaluate(rules: CouponRules, cart: Cart) -> int | Rejection:
    """One coupon alone on ``cart``: its discount, or why it does not apply."""
    if rules.scope.merchants and cart.merchant_id not in rules.scope.merchants:
        return Rejection(Reason.COUPON_NOT_APPLICABLE, f"merchant {cart.merchant_id!r} is not in its scope")
    lines = in_scope_lines(rules.scope, cart)
    if not lines:
        return Rejection(Reason.COUPON_NOT_APPLICABLE, "no item of the order is in its scope")
    return discount_on(rules, sum(cart.lines[index].total for index in lines))


@dataclass(frozen=True)
class Applied:
    """Coupons applied together: each one's discount (in application order) and each line's share
    of the total discount."""

    discounts: tuple[int, ...]
    line_shares: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.discounts)


def stacking_problem(rules: Sequence[CouponRules]) -> bool:
    """True when these coupons may not be used together (a non-stackable one with any other)."""
    return len(rules) > 1 and not all(item.stackable for item in rules)


def apply_coupons(cart: Cart, coupons: Sequence[tuple[str, CouponRules]]) -> Applied | tuple[str, Rejection]:
    """Apply ``coupons`` (id, rules) in order; the result, or the first coupon that fails and why."""
    if stacking_problem([rules for _coupon_id, rules in coupons]):
        lonely = next(coupon_id for coupon_id, rules in coupons if not rules.stackable)
        return lonely, Rejection(Reason.COUPONS_NOT_STACKABLE, "a non-stackable coupon must be used alone")
    left = [line.total for line in cart.lines]
    shares = [0 for _ in cart.lines]
    discounts: list[int] = []
    for coupon_id, rules in coupons:
        wanted = evaluate(rules, cart)
        if isinstance(wanted, Rejection):
            return coupon_id, wanted
        lines = in_scope_lines(rules.scope, cart)
        room = sum(left[index] for index in lines)
        discount = min(wanted, room)
        if discount <= 0:
            return coupon_id, Rejection(
                Reason.COUPON_NOT_APPLICABLE, "the other coupons already took its items to zero"
            )
        spread = allocate_discount([left[index] for index in lines], discount)
        for index, share in zip(lines, spread, strict=True):
            left[index] -= share
            shares[index] += share
        discounts.append(discount)
    applied = Applied(tuple(discounts), tuple(shares))
    require(0 <= applied.total <= cart.total, "coupons never take an order below zero")
    require(sum(applied.line_shares) == applied.total, "line shares add up to the discount")
    return applied
