"""User coupons and their state journal.

Every state change of a user coupon goes through :func:`change_state`, which asks the domain
state machine (:func:`engine.domain.coupons.states.transition`) for the target and applies it
with a conditional UPDATE (``WHERE state = <the state it was read in>``), appending the change
to ``coupon_events``. Nothing else writes ``user_coupons.state``.

Templates live in :mod:`engine.storage.coupon_templates`, stock in
:mod:`engine.storage.coupon_stock`, activities in :mod:`engine.storage.activities`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select

from engine.domain.coupons.states import (
    CouponEvent,
    CouponState,
    effective_state,
    is_past_validity,
    transition,
)
from engine.domain.errors import CofferError, Reason
from engine.domain.results import CouponView
from engine.storage.scans import DueSummary, due_keys, due_summary
from engine.storage.schema import coupon_events, user_coupons

__all__ = [
    "LIVE_STATES",
    "MAX_LISTED_COUPONS",
    "MAX_QUOTE_COUPONS",
    "SOURCE_ACTIVITY",
    "SOURCE_CLAIM",
    "change_state",
    "count_issued",
    "coupon_not_found",
    "coupon_view",
    "expirable_coupon_ids",
    "expirable_coupons_summary",
    "insert_coupon",
    "lock_coupons",
    "read_coupon",
    "read_coupon_by_code",
    "read_coupon_views",
    "read_live_coupons",
    "state_now",
    "stored_state",
]


#: A wallet view lists at most this many coupons (newest first).
MAX_LISTED_COUPONS = 200
#: QuoteCharge considers at most this many of a user's live coupons.
MAX_QUOTE_COUPONS = 200

SOURCE_CLAIM = "CLAIM"
SOURCE_ACTIVITY = "ACTIVITY"


#: Built once; the rows' values arrive as execution parameters.
_INSERT_EVENT = coupon_events.insert()
_INSERT_COUPON = user_coupons.insert()


def _event(
    connection: Connection,
    *,
    coupon_id: str,
    user_id: int,
    event: CouponEvent,
    from_state: CouponState | None,
    to_state: CouponState,
    reference: str,
    now_us: int,
) -> None:
    connection.execute(
        _INSERT_EVENT,
        {
            "coupon_id": coupon_id,
            "user_id": user_id,
            "event": event.value,
            "from_state": "" if from_state is None else from_state.value,
            "to_state": to_state.value,
            "reference": reference[:160],
            "created_at_us": now_us,
        },
    )


def insert_coupon(
    connection: Connection,
    *,
    coupon_id: str,
    code: str,
    user_id: int,
    template_id: str,
    source: str,
    activity_id: str,
    expires_at_us: int | None,
    transaction_id: str,
    now_us: int,
) -> Row[Any]:
    """A new user coupon, in the state the machine gives a claim (ACTIVATED)."""
    state = transition(None, CouponEvent.CLAIM)
    connection.execute(
        _INSERT_COUPON,
        {
            "coupon_id": coupon_id,
            "code": code,
            "user_id": user_id,
            "template_id": template_id,
            "state": state.value,
            "source": source,
            "activity_id": activity_id,
            "claimed_at_us": now_us,
            "expires_at_us": expires_at_us,
            "charge_id": "",
            "transaction_id": transaction_id,
            "updated_at_us": now_us,
        },
    )
    _event(
        connection,
        coupon_id=coupon_id,
        user_id=user_id,
        event=CouponEvent.CLAIM,
        from_state=None,
        to_state=state,
        reference=transaction_id,
        now_us=now_us,
    )
    row = read_coupon(connection, coupon_id)
    if row is None:
        raise CofferError(Reason.CONTENTION, "the new coupon vanished; retry")
    return row


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_COUPON_BY_ID = select(user_coupons).where(user_coupons.c.coupon_id == bindparam("p_coupon_id"))
_COUPON_BY_ID_LOCKED = _COUPON_BY_ID.with_for_update()
_COUPON_BY_CODE = select(user_coupons).where(user_coupons.c.code == bindparam("p_code"))
_COUPON_BY_CODE_LOCKED = _COUPON_BY_CODE.with_for_update()


def read_coupon(connection: Connection, coupon_id: str, *, lock: bool = False) -> Row[Any] | None:
    return connection.execute(
        _COUPON_BY_ID_LOCKED if lock else _COUPON_BY_ID, {"p_coupon_id": coupon_id}
    ).one_or_none()


def read_coupon_by_code(connection: Connection, code: str, *, lock: bool = False) -> Row[Any] | None:
    return connection.execute(
        _COUPON_BY_CODE_LOCKED if lock else _COUPON_BY_CODE, {"p_code": code}
    ).one_or_none()


def lock_coupons(connection: Connection, coupon_ids: Sequence[str]) -> dict[str, Row[Any]]:
    """Lock these coupons in the engine's lock order (sorted by id); missing ones are absent."""
    rows: dict[str, Row[Any]] = {}
    for coupon_id in sorted(set(coupon_ids)):
        row = read_coupon(connection, coupon_id, lock=True)
        if row is not None:
            rows[coupon_id] = row
    return rows


def stored_state(row: Row[Any]) -> CouponState:
    return CouponState(row.state)


def state_now(row: Row[Any], now_us: int) -> CouponState:
    return effective_state(CouponState(row.state), row.expires_at_us, now_us)


#: A coupon's move from the state it was read in: {sets its holding charge: statement}, built once.
_CHANGE_STATE = {
    sets_charge: user_coupons.update()
    .where(
        user_coupons.c.coupon_id == bindparam("p_coupon_id"), user_coupons.c.state == bindparam("p_stored")
    )
    .values(
        state=bindparam("p_target"),
        updated_at_us=bindparam("p_now_us"),
        **({"charge_id": bindparam("p_charge_id")} if sets_charge else {}),
    )
    for sets_charge in (False, True)
}


def change_state(
    connection: Connection,
    row: Row[Any],
    event: CouponEvent,
    now_us: int,
    *,
    charge_id: str | None = None,
    reference: str = "",
    restore_on_refund: bool = True,
) -> CouponState:
    """Move the coupon ``row`` (read in this transaction, normally locked) by ``event``.

    The machine judges the state as of ``now_us`` (past its validity an ACTIVATED coupon is
    EXPIRED), except for EXPIRE itself, which records an expiry that has already taken effect.
    ``charge_id`` (when given) becomes the coupon's holding charge.
    """
    stored = CouponState(row.state)
    ended = is_past_validity(row.expires_at_us, now_us)
    current = stored if event is CouponEvent.EXPIRE else effective_state(stored, row.expires_at_us, now_us)
    target = transition(current, event, validity_ended=ended, restore_on_refund=restore_on_refund)
    parameters: dict[str, Any] = {
        "p_coupon_id": row.coupon_id,
        "p_stored": stored.value,
        "p_target": target.value,
        "p_now_us": now_us,
    }
    if charge_id is not None:
        parameters["p_charge_id"] = charge_id
    updated = connection.execute(_CHANGE_STATE[charge_id is not None], parameters)
    if updated.rowcount != 1:
        raise CofferError(
            Reason.CONTENTION,
            f"coupon {row.coupon_id} changed concurrently; retry with the same key",
            metadata={"coupon_id": row.coupon_id},
        )
    _event(
        connection,
        coupon_id=row.coupon_id,
        user_id=row.user_id,
        event=event,
        from_state=stored,
        to_state=target,
        reference=reference or (charge_id or ""),
        now_us=now_us,
    )
    return target


def coupon_view(row: Row[Any], now_us: int) -> CouponView:
    return CouponView(
        coupon_id=row.coupon_id,
        code=row.code,
        template_id=row.template_id,
        state=state_now(row, now_us).value,
        expires_at_us=row.expires_at_us,
        user_id=row.user_id,
    )


def read_coupon_views(connection: Connection, user_id: int, now_us: int) -> tuple[CouponView, ...]:
    """A wallet's coupons in every state, newest first (at most :data:`MAX_LISTED_COUPONS`)."""
    rows = connection.execute(_WALLET_COUPONS, {"p_user_id": user_id}).all()
    return tuple(coupon_view(row, now_us) for row in rows)


# Built once: a wallet (and so every mutation's answer) reads it.
_WALLET_COUPONS = (
    select(user_coupons)
    .where(user_coupons.c.user_id == bindparam("p_user_id"))
    .order_by(user_coupons.c.claimed_at_us.desc(), user_coupons.c.coupon_id.desc())
    .limit(MAX_LISTED_COUPONS)
)


LIVE_STATES = (CouponState.ACTIVATED.value, CouponState.LOCKED.value, CouponState.FROZEN.value)


def read_live_coupons(connection: Connection, user_id: int) -> list[Row[Any]]:
    """The user's coupons that may still matter to a cart (ACTIVATED, LOCKED, FROZEN), soonest
    expiry first, at most :data:`MAX_QUOTE_COUPONS`."""
    return list(
        connection.execute(
            select(user_coupons)
            .where(user_coupons.c.user_id == user_id, user_coupons.c.state.in_(LIVE_STATES))
            .order_by(user_coupons.c.expires_at_us, user_coupons.c.coupon_id)
            .limit(MAX_QUOTE_COUPONS)
        ).all()
    )


def coupon_not_found(coupon_id: str, field: str = "coupon_id") -> CofferError:
    return CofferError(
        Reason.COUPON_NOT_FOUND,
        f"no coupon {coupon_id!r}",
        metadata={"coupon_id": coupon_id, "field": field},
    )


def count_issued(connection: Connection, template_id: str) -> int:
    """Coupons of ``template_id`` issued on this database, in every state."""
    return int(
        connection.execute(select(func.count()).where(user_coupons.c.template_id == template_id)).scalar_one()
    )


def expirable_coupon_ids(
    connection: Connection, states: Sequence[str], now_us: int, after: str, limit: int
) -> list[str]:
    """Up to ``limit`` ids (ascending, after ``after``) of coupons in ``states`` whose validity
    ended by ``now_us``: one keyset-paged batch of the expiry job."""
    return due_keys(connection, user_coupons.c.coupon_id, _expirable_conditions(states, now_us), after, limit)


def expirable_coupons_summary(
    connection: Connection, states: Sequence[str], now_us: int, cap: int
) -> DueSummary:
    """How many of the coupons :func:`expirable_coupon_ids` pages through are due (at most ``cap``)."""
    return due_summary(connection, user_coupons.c.coupon_id, None, _expirable_conditions(states, now_us), cap)


def _expirable_conditions(states: Sequence[str], now_us: int) -> list[Any]:
    return [user_coupons.c.state.in_(states), user_coupons.c.expires_at_us <= now_us]
