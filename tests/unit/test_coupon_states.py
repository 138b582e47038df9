"""The user-coupon state table (CONTRACT §3), every (state, event) pair (issue 4 must-show 3)."""

from __future__ import annotations

import itertools

import pytest

from engine.domain.coupons.states import (
    CouponEvent,
    CouponState,
    effective_state,
    transition,
    unusable_reason,
)
from engine.domain.errors import CofferError, Reason

S = CouponState
E = CouponEvent

#: The contract's table, written out independently of the implementation's.
LEGAL = {
    (None, E.CLAIM): S.ACTIVATED,
    (S.UNACTIVATED, E.ACTIVATE_CODE): S.ACTIVATED,
    (S.ACTIVATED, E.AUTHORIZE): S.LOCKED,
    (S.LOCKED, E.RELEASE): S.ACTIVATED,
    (S.ACTIVATED, E.USE): S.USED,
    (S.LOCKED, E.CAPTURE): S.USED,
    (S.ACTIVATED, E.FREEZE): S.FROZEN,
    (S.FROZEN, E.UNFREEZE): S.ACTIVATED,
    (S.ACTIVATED, E.EXPIRE): S.EXPIRED,
    (S.FROZEN, E.EXPIRE): S.EXPIRED,
    (S.USED, E.FULL_REFUND): S.ACTIVATED,
}


@pytest.mark.parametrize(("current", "event"), list(itertools.product([None, *CouponState], CouponEvent)))
def test_every_transition(current: CouponState | None, event: CouponEvent) -> None:
    expected = LEGAL.get((current, event))
    if expected is None:
        with pytest.raises(CofferError) as refused:
            transition(current, event, validity_ended=True)
        assert refused.value.reason is Reason.ILLEGAL_STATE_TRANSITION
        return
    validity_ended = event is E.EXPIRE
    assert transition(current, event, validity_ended=validity_ended) is expected


def test_full_refund_outcomes() -> None:
    assert transition(S.USED, E.FULL_REFUND, validity_ended=False, restore_on_refund=True) is S.ACTIVATED
    assert transition(S.USED, E.FULL_REFUND, validity_ended=True, restore_on_refund=True) is S.EXPIRED
    assert transition(S.USED, E.FULL_REFUND, validity_ended=False, restore_on_refund=False) is S.REFUNDED
    assert transition(S.USED, E.FULL_REFUND, validity_ended=True, restore_on_refund=False) is S.EXPIRED


def test_expiry_only_after_the_validity_end() -> None:
    with pytest.raises(CofferError) as refused:
        transition(S.ACTIVATED, E.EXPIRE, validity_ended=False)
    assert refused.value.reason is Reason.ILLEGAL_STATE_TRANSITION


def test_effective_state_expires_at_the_instant() -> None:
    assert effective_state(S.ACTIVATED, 1000, 999) is S.ACTIVATED
    assert effective_state(S.ACTIVATED, 1000, 1000) is S.EXPIRED
    assert effective_state(S.FROZEN, 1000, 1001) is S.EXPIRED
    assert effective_state(S.LOCKED, 1000, 5000) is S.LOCKED
    assert effective_state(S.USED, 1000, 5000) is S.USED
    assert effective_state(S.ACTIVATED, None, 10**18) is S.ACTIVATED


def test_reasons_for_unusable_coupons() -> None:
    assert unusable_reason(S.ACTIVATED) is None
    assert unusable_reason(S.EXPIRED) is Reason.COUPON_EXPIRED
    assert unusable_reason(S.USED) is Reason.COUPON_ALREADY_USED
    assert unusable_reason(S.LOCKED) is Reason.COUPON_ALREADY_USED
    assert unusable_reason(S.FROZEN) is Reason.COUPON_FROZEN
    assert unusable_reason(S.UNACTIVATED) is Reason.COUPON_NOT_ACTIVE
