"""The life of a charge: its statuses (CONTRACT §2) and the one table of moves between them.

The values equal the strings stored in ``charges.status`` and the proto's
``CHARGE_STATUS_<value>`` names.

==================  ==================  ==============================================
from                to                  event (by)
==================  ==================  ==============================================
(none)              AUTHORIZED          a charge with ``authorize_only``
(none)              CAPTURED            an immediate charge, a till redemption
AUTHORIZED          CAPTURED            CAPTURE (Capture)
AUTHORIZED          VOIDED              VOID (Void)
AUTHORIZED          EXPIRED             EXPIRE (the hold-expiry job)
CAPTURED            PARTIALLY_REFUNDED  PARTIAL_REFUND (a refund leaving value captured)
CAPTURED            REFUNDED            FULL_REFUND (a refund of everything left)
PARTIALLY_REFUNDED  PARTIALLY_REFUNDED  PARTIAL_REFUND
PARTIALLY_REFUNDED  REFUNDED            FULL_REFUND
==================  ==================  ==============================================

Every other (status, event) pair is refused with ILLEGAL_STATE_TRANSITION. The table is
enforced in one place, ``engine.storage.charges.change_status``: a conditional
``UPDATE ... WHERE status = :from``, so Capture, Void and the expiry job resolve an
authorization at most once — whichever commits first wins.
"""

from __future__ import annotations

import enum

from engine.domain.errors import CofferError, Reason

__all__ = [
    "REFUNDABLE_STATUSES",
    "RESOLVABLE_STATUSES",
    "TRANSITIONS",
    "ChargeEvent",
    "ChargeStatus",
    "illegal_charge_transition",
    "refund_event",
    "transition",
]


class ChargeStatus(enum.StrEnum):
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class ChargeEvent(enum.Enum):
    CAPTURE = "CAPTURE"
    VOID = "VOID"
    EXPIRE = "EXPIRE"
    PARTIAL_REFUND = "PARTIAL_REFUND"
    FULL_REFUND = "FULL_REFUND"


_S = ChargeStatus
_E = ChargeEvent

#: (from, event) -> to; nothing else is allowed.
TRANSITIONS: dict[tuple[ChargeStatus, ChargeEvent], ChargeStatus] = {
    (_S.AUTHORIZED, _E.CAPTURE): _S.CAPTURED,
    (_S.AUTHORIZED, _E.VOID): _S.VOIDED,
    (_S.AUTHORIZED, _E.EXPIRE): _S.EXPIRED,
    (_S.CAPTURED, _E.PARTIAL_REFUND): _S.PARTIALLY_REFUNDED,
    (_S.CAPTURED, _E.FULL_REFUND): _S.REFUNDED,
    (_S.PARTIALLY_REFUNDED, _E.PARTIAL_REFUND): _S.PARTIALLY_REFUNDED,
    (_S.PARTIALLY_REFUNDED, _E.FULL_REFUND): _S.REFUNDED,
}

#: Statuses a refund may start from (derived from the table, so it cannot drift from it).
REFUNDABLE_STATUSES: frozenset[ChargeStatus] = frozenset(
    status for status, event in TRANSITIONS if event is _E.FULL_REFUND
)
#: Statuses Capture, Void and expiry may start from.
RESOLVABLE_STATUSES: frozenset[ChargeStatus] = frozenset(
    status for status, event in TRANSITIONS if event is _E.CAPTURE
)


def illegal_charge_transition(current: ChargeStatus, event: ChargeEvent) -> CofferError:
    return CofferError(
        Reason.ILLEGAL_STATE_TRANSITION,
        f"a {current.value} charge cannot take {event.value}",
        metadata={"from": current.value, "event": event.value},
    )


def transition(current: ChargeStatus, event: ChargeEvent) -> ChargeStatus:
    """The status ``event`` moves a charge in ``current`` to, or ILLEGAL_STATE_TRANSITION."""
    target = TRANSITIONS.get((current, event))
    if target is None:
        raise illegal_charge_transition(current, event)
    return target


def refund_event(refunded_total: int, captured_amount: int) -> ChargeEvent:
    """A refund bringing the charge to ``refunded_total`` is full when nothing captured is left."""
    return _E.FULL_REFUND if refunded_total == captured_amount else _E.PARTIAL_REFUND
