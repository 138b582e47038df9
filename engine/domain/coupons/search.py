"""The best coupon choice for a cart (QuoteCharge): the largest total discount under the
stacking rules, found by a bounded search.

Candidates are the user's usable coupons. Each non-stackable coupon is one option on its own.
Stackable coupons are ranked by what each takes off alone; the best :data:`MAX_STACK_CANDIDATES`
are combined in every subset of at most ``max_coupons`` (the per-charge limit), at most
:data:`MAX_COMBINATIONS` subsets in all (C(12,1..5) = 1,585, so the bound is never the binding
one with the defaults). Ties go to fewer coupons, then to the coupons that expire first (use
them before they are lost), then to the smallest ids, so the answer is deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.coupons.rules import Applied, Cart, CouponRules, Rejection, apply_coupons, evaluate
from engine.domain.errors import Reason

MAX_STACK_CANDIDATES = 12
MAX_COMBINATIONS = 2_000
_NEVER = 2**63


@dataclass(frozen=True)
class Candidate:
    coupon_id: str
    rules: CouponRules
    expires_at_us: int | None = None


@dataclass(frozen=True)
class Choice:
    """The chosen coupons (in application order) with their discounts, and why each other
    candidate was left out."""

    coupon_ids: tuple[str, ...]
    discounts: tuple[int, ...]
    line_shares: tuple[int, ...]
    rejected: tuple[tuple[str, Rejection], ...]
    combinations_tried: int

    @property
    def total(self) -> int:
        return sum(self.discounts)


def _expiry(candidate: Candidate) -> int:
    return _NEVER if candidate.expires_at_us is None else candidate.expires_at_us


def best_combination(
    cart: Cart,
    candidates: Sequence[Candidate],
    *,
    max_coupons: int = 5,
    max_stack_candidates: int = MAX_STACK_CANDIDATES,
    max_combinations: int = MAX_COMBINATIONS,
) -> Choice:
    rejected: dict[str, Rejection] = {}
    alone: dict[str, int] = {}
    for candidate in candidates:
        outcome = evaluate(candidate.rules, cart)
        if isinstance(outcome, Rejection):
            rejected[candidate.coupon_id] = outcome
        else:
            alone[candidate.coupon_id] = outcome
    usable = [candidate for candidate in candidates if candidate.coupon_id in alone]
    ranked = sorted(usable, key=lambda item: (-alone[item.coupon_id], _expiry(item), item.coupon_id))
    stackable = [item for item in ranked if item.rules.stackable][:max_stack_candidates]

    options: list[tuple[tuple[Candidate, ...], Applied]] = []
    tried = 0
    for candidate in ranked:
        if not candidate.rules.stackable:
            result = apply_coupons(cart, [(candidate.coupon_id, candidate.rules)])
            tried += 1
            if isinstance(result, Applied):
                options.append(((candidate,), result))
    for size in range(1, max_coupons + 1):
        for subset in itertools.combinations(stackable, size):
            if tried >= max_combinations:
                break
            tried += 1
            result = apply_coupons(cart, [(item.coupon_id, item.rules) for item in subset])
            if isinstance(result, Applied):
                options.append((subset, result))

    if not options:
        return Choice((), (), tuple(0 for _ in cart.lines), _in_order(candidates, rejected), tried)
    chosen, applied = min(
        options,
        key=lambda option: (
            -option[1].total,
            len(option[0]),
            sorted(_expiry(item) for item in option[0]),
            sorted(item.coupon_id for item in option[0]),
        ),
    )
    chosen_ids = {item.coupon_id for item in chosen}
    best_is_lonely = len(chosen) == 1 and not chosen[0].rules.stackable
    considered = {item.coupon_id for item in stackable}
    for candidate in usable:
        if candidate.coupon_id in chosen_ids:
            continue
        if best_is_lonely or not candidate.rules.stackable:
            rejected[candidate.coupon_id] = Rejection(
                Reason.COUPONS_NOT_STACKABLE,
                f"it cannot be combined with the best choice, which takes off {applied.total}",
            )
        elif candidate.coupon_id not in considered:
            rejected[candidate.coupon_id] = Rejection(
                Reason.COUPON_NOT_APPLICABLE,
                f"only the {max_stack_candidates} largest stackable discounts are combined",
            )
        elif len(chosen) >= max_coupons:
            rejected[candidate.coupon_id] = Rejection(
                Reason.COUPON_NOT_APPLICABLE, f"a charge takes at most {max_coupons} coupons"
            )
        else:
            rejected[candidate.coupon_id] = Rejection(
                Reason.COUPON_NOT_APPLICABLE, "it adds nothing to the best combination"
            )
    return Choice(
        coupon_ids=tuple(item.coupon_id for item in chosen),
        discounts=applied.discounts,
        line_shares=applied.line_shares,
        rejected=_in_order(candidates, rejected),
        combinations_tried=tried,
    )


def _in_order(
    candidates: Sequence[Candidate], rejected: dict[str, Rejection]
) -> tuple[tuple[str, Rejection], ...]:
    return tuple(
        (item.coupon_id, rejected[item.coupon_id]) for item in candidates if item.coupon_id in rejected
    )
