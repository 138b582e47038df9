"""The user-coupon state machine (CONTRACT §3), enforced here and nowhere else.

=====================  ==========================  ===============================================
from                   to                          event (by)
=====================  ==========================  ===============================================
UNACTIVATED            ACTIVATED                   ACTIVATE_CODE (claiming a pre-generated code)
(none)                 ACTIVATED                   CLAIM (``Issue(coupon)``, an activity bundle)
ACTIVATED              LOCKED                      AUTHORIZE (a charge with ``authorize_only``)
LOCKED                 ACTIVATED                   RELEASE (Void, or the hold's expiry)
ACTIVATED              USED                        USE (an immediate charge, a till redemption)
LOCKED                 USED                        CAPTURE (the capture of its authorization)
ACTIVATED              FROZEN                      FREEZE (FreezeCoupon, risk control)
FROZEN                 ACTIVATED                   UNFREEZE (UnfreezeCoupon)
ACTIVATED, FROZEN      EXPIRED                     EXPIRE (its validity end; the job records it)
USED                   ACTIVATED/EXPIRED/REFUNDED  FULL_REFUND (the full refund of its order)
=====================  ==========================  ===============================================

USE starts only from ACTIVATED and CAPTURE only from LOCKED: together they are the contract's
"ACTIVATED, LOCKED → USED", and a coupon LOCKED by one authorization can never be used by a
second charge. Every other (state, event) pair raises ILLEGAL_STATE_TRANSITION.

A coupon past its validity end is EXPIRED at that instant (:func:`effective_state`), whether or
not the expiry job has recorded it yet; LOCKED and USED coupons keep their state (validity is
judged when a coupon is taken, not when its authorization is captured).
"""

from __future__ import annotations

import enum

from engine.domain.errors import CofferError, Reason


class CouponState(enum.Enum):
    UNACTIVATED = "UNACTIVATED"
    ACTIVATED = "ACTIVATED"
    LOCKED = "LOCKED"
    USED = "USED"
    FROZEN = "FROZEN"
    EXPIRED = "EXPIRED"
    REFUNDED = "REFUNDED"


class CouponEvent(enum.Enum):
    CLAIM = "CLAIM"
    ACTIVATE_CODE = "ACTIVATE_CODE"
    AUTHORIZE = "AUTHORIZE"
    RELEASE = "RELEASE"
    USE = "USE"
    CAPTURE = "CAPTURE"
    FREEZE = "FREEZE"
    UNFREEZE = "UNFREEZE"
    EXPIRE = "EXPIRE"
    FULL_REFUND = "FULL_REFUND"


S = CouponState
E = CouponEvent

#: (from, event) -> to. ``None`` as *from* is a coupon that does not exist yet; FULL_REFUND's
#: target depends on the coupon (see :func:`transition`), so it is listed as USED's own state.
TRANSITIONS: dict[tuple[CouponState | None, CouponEvent], CouponState] = {
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
    (S.USED, E.FULL_REFUND): S.USED,
}

#: States whose coupon stops being usable at the validity end without anyone touching it.
EXPIRES_IN_PLACE = (S.ACTIVATED, S.FROZEN)


def is_past_validity(expires_at_us: int | None, now_us: int) -> bool:
    """Validity ends at ``expires_at_us`` exactly (an instant, not a day)."""
    return expires_at_us is not None and expires_at_us <= now_us


def effective_state(stored: CouponState, expires_at_us: int | None, now_us: int) -> CouponState:
    """The state a reader or a refusal sees now: EXPIRED from the validity end on."""
    if stored in EXPIRES_IN_PLACE and is_past_validity(expires_at_us, now_us):
        return S.EXPIRED
    return stored


def illegal(current: CouponState | None, event: CouponEvent, why: str = "") -> CofferError:
    name = "(none)" if current is None else current.value
    return CofferError(
        Reason.ILLEGAL_STATE_TRANSITION,
        f"a {name} coupon cannot take {event.value}" + (f": {why}" if why else ""),
        metadata={"from": name, "event": event.value},
    )


def transition(
    current: CouponState | None,
    event: CouponEvent,
    *,
    validity_ended: bool = False,
    restore_on_refund: bool = True,
) -> CouponState:
    """The state ``event`` moves a coupon in ``current`` to, or ILLEGAL_STATE_TRANSITION.

    ``validity_ended`` matters to EXPIRE (refused before the validity end) and FULL_REFUND
    (ACTIVATED if still valid and ``restore_on_refund``; EXPIRED if the validity has ended;
    else REFUNDED).
    """
    target = TRANSITIONS.get((current, event))
    if target is None:
        raise illegal(current, event)
    if event is E.EXPIRE and not validity_ended:
        raise illegal(current, event, "its validity has not ended")
    if event is E.FULL_REFUND:
        if validity_ended:
            return S.EXPIRED
        return S.ACTIVATED if restore_on_refund else S.REFUNDED
    return target


def unusable_reason(state: CouponState) -> Reason | None:
    """Why a coupon in (effective) ``state`` cannot pay for an order; ``None`` if it can."""
    return {
        S.ACTIVATED: None,
        S.UNACTIVATED: Reason.COUPON_NOT_ACTIVE,
        S.LOCKED: Reason.COUPON_ALREADY_USED,
        S.USED: Reason.COUPON_ALREADY_USED,
        S.REFUNDED: Reason.COUPON_NOT_ACTIVE,
        S.FROZEN: Reason.COUPON_FROZEN,
        S.EXPIRED: Reason.COUPON_EXPIRED,
    }[state]
