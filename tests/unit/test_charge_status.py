from __future__ import annotations

import itertools

import pytest

from engine.domain.charge_status import (
    REFUNDABLE_STATUSES,
    RESOLVABLE_STATUSES,
    TRANSITIONS,
    ChargeEvent,
    ChargeStatus,
    refund_event,
    transition,
)
from engine.domain.errors import CofferError, Reason

S = ChargeStatus
E = ChargeEvent

ALLOWED = {
    (S.AUTHORIZED, E.CAPTURE): S.CAPTURED,
    (S.AUTHORIZED, E.VOID): S.VOIDED,
    (S.AUTHORIZED, E.EXPIRE): S.EXPIRED,
    (S.CAPTURED, E.PARTIAL_REFUND): S.PARTIALLY_REFUNDED,
    (S.CAPTURED, E.FULL_REFUND): S.REFUNDED,
    (S.PARTIALLY_REFUNDED, E.PARTIAL_REFUND): S.PARTIALLY_REFUNDED,
    (S.PARTIALLY_REFUNDED, E.FULL_REFUND): S.REFUNDED,
}


def test_the_table_is_exactly_the_contract() -> None:
    assert TRANSITIONS == ALLOWED


@pytest.mark.parametrize(("current", "event"), list(itertools.product(S, E)))
def test_every_pair_is_allowed_or_refused(current: ChargeStatus, event: ChargeEvent) -> None:
    if (current, event) in ALLOWED:
        assert transition(current, event) is ALLOWED[(current, event)]
    else:
        with pytest.raises(CofferError) as caught:
            transition(current, event)
        assert caught.value.reason is Reason.ILLEGAL_STATE_TRANSITION


def test_terminal_statuses_take_no_event() -> None:
    for status in (S.VOIDED, S.EXPIRED, S.REFUNDED):
        assert all((status, event) not in TRANSITIONS for event in E)


def test_derived_sets() -> None:
    assert {S.CAPTURED, S.PARTIALLY_REFUNDED} == REFUNDABLE_STATUSES
    assert {S.AUTHORIZED} == RESOLVABLE_STATUSES
    assert "CAPTURED" in REFUNDABLE_STATUSES


def test_values_are_the_stored_strings() -> None:
    assert [status.value for status in S] == [status.name for status in S]


def test_refund_event() -> None:
    assert refund_event(100, 100) is E.FULL_REFUND
    assert refund_event(40, 100) is E.PARTIAL_REFUND
    assert refund_event(0, 0) is E.FULL_REFUND
