"""Gift-card rows: every balance change is one conditional UPDATE that also moves the state.

States: ACTIVE (usable), FROZEN (by an operator or risk control), EXPIRED (past ``expires_at``;
effective at that instant, recorded by the expiry job), EMPTY (``available`` and ``held`` both 0;
back to ACTIVE when a reload or a refund puts value on it again). The balance of an EXPIRED card
stays on it as the float's liability (docs/two-phase-and-instruments.md).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, case, or_, select

from engine.domain.money import MAX_BALANCE_FEN
from engine.domain.results import GiftCardView
from engine.storage.dialect import insert_or_ignore
from engine.storage.scans import DueSummary, due_keys, due_summary
from engine.storage.schema import gift_cards

__all__ = [
    "ACTIVE",
    "EMPTY",
    "EXPIRABLE_STATES",
    "EXPIRED",
    "FROZEN",
    "change_balance",
    "due_card_codes",
    "due_cards_summary",
    "effective_state",
    "expire_card",
    "extend_expiry",
    "insert_card",
    "lock_cards",
    "read_card",
    "view_of",
]

ACTIVE = "ACTIVE"
FROZEN = "FROZEN"
EXPIRED = "EXPIRED"
EMPTY = "EMPTY"
#: States a card leaves for EXPIRED at its expiry.
EXPIRABLE_STATES = (ACTIVE, EMPTY, FROZEN)


def effective_state(state: str, expires_at_us: int | None, now_us: int) -> str:
    """A card past its expiry is EXPIRED at that instant, before the job records it."""
    if state in (ACTIVE, EMPTY, FROZEN) and expires_at_us is not None and expires_at_us <= now_us:
        return EXPIRED
    return state


def view_of(row: Row[Any], now_us: int) -> GiftCardView:
    return GiftCardView(
        code=row.code,
        balance=row.available,
        held=row.held,
        state=effective_state(row.state, row.expires_at_us, now_us),
        expires_at_us=row.expires_at_us,
        user_id=row.user_id,
    )


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_CARD = select(gift_cards).where(gift_cards.c.code == bindparam("p_code"))
_CARD_LOCKED = _CARD.with_for_update()
_CARDS_LOCKED = (
    select(gift_cards)
    .where(gift_cards.c.code.in_(bindparam("p_codes", expanding=True)))
    .order_by(gift_cards.c.code)
    .with_for_update()
)


def read_card(connection: Connection, code: str, *, lock: bool = False) -> Row[Any] | None:
    return connection.execute(_CARD_LOCKED if lock else _CARD, {"p_code": code}).one_or_none()


def _state_after(available: Any, held: Any) -> Any:
    """The state once ``available``/``held`` take their new values (SQL expressions)."""
    return case(
        (and_(gift_cards.c.state == ACTIVE, available == 0, held == 0), EMPTY),
        (and_(gift_cards.c.state == EMPTY, or_(available > 0, held > 0)), ACTIVE),
        else_=gift_cards.c.state,
    )


@functools.cache
def _change_balance_statement(takes_available: bool, takes_held: bool, require_usable: bool) -> Any:
    """Built once per shape (engine.storage.charges._ADD_LEG_TOTALS says why; this one, with its
    CASE, cost more to build than to run): the deltas, the bounds they are checked against and
    the time arrive as parameters."""
    available = gift_cards.c.available + bindparam("p_available_delta")
    held = gift_cards.c.held + bindparam("p_held_delta")
    conditions = [
        gift_cards.c.code == bindparam("p_code"),
        gift_cards.c.available >= bindparam("p_available_bound")
        if takes_available
        else gift_cards.c.available <= bindparam("p_available_bound"),
        gift_cards.c.held >= bindparam("p_held_bound")
        if takes_held
        else gift_cards.c.held <= bindparam("p_held_bound"),
    ]
    if require_usable:
        conditions.append(gift_cards.c.state == ACTIVE)
        conditions.append(
            or_(gift_cards.c.expires_at_us.is_(None), gift_cards.c.expires_at_us > bindparam("p_now_us"))
        )
    return (
        gift_cards.update()
        .where(*conditions)
        .values(
            available=available,
            held=held,
            state=_state_after(available, held),
            updated_at_us=bindparam("p_now_us"),
        )
    )


def change_balance(
    connection: Connection,
    code: str,
    *,
    available_delta: int,
    held_delta: int,
    now_us: int,
    require_usable: bool = False,
) -> bool:
    """Add the deltas in one statement; False when it would take a bucket below zero, pass the
    balance limit, or (``require_usable``) the card is not ACTIVE and unexpired."""
    # A bucket that gives must hold what it gives (>= -delta); one that takes must stay within
    # the limit after it (<= MAX - delta).
    takes_available, takes_held = available_delta < 0, held_delta < 0
    updated = connection.execute(
        _change_balance_statement(takes_available, takes_held, require_usable),
        {
            "p_code": code,
            "p_available_delta": available_delta,
            "p_held_delta": held_delta,
            "p_available_bound": -available_delta if takes_available else MAX_BALANCE_FEN - available_delta,
            "p_held_bound": -held_delta if takes_held else MAX_BALANCE_FEN - held_delta,
            "p_now_us": now_us,
        },
    )
    return updated.rowcount == 1


def lock_cards(connection: Connection, codes: list[str]) -> dict[str, Row[Any]]:
    """Lock these cards in the engine's lock order (sorted by code); missing ones are absent."""
    rows = connection.execute(_CARDS_LOCKED, {"p_codes": sorted(codes)}).all()
    return {row.code: row for row in rows}


def insert_card(
    connection: Connection, *, code: str, user_id: int, available: int, expires_at_us: int | None, now_us: int
) -> bool:
    """A new ACTIVE card; False when the code is taken."""
    return insert_or_ignore(
        connection,
        gift_cards,
        {
            "code": code,
            "user_id": user_id,
            "available": available,
            "held": 0,
            "state": ACTIVE,
            "expires_at_us": expires_at_us,
            "created_at_us": now_us,
            "updated_at_us": now_us,
        },
    )


def extend_expiry(connection: Connection, code: str, expires_at_us: int) -> None:
    connection.execute(
        gift_cards.update().where(gift_cards.c.code == code).values(expires_at_us=expires_at_us)
    )


def due_card_codes(connection: Connection, now_us: int, after: str, limit: int) -> list[str]:
    """Up to ``limit`` cards past their expiry, not yet EXPIRED, whose code sorts after ``after``."""
    return due_keys(connection, gift_cards.c.code, _due_card_conditions(now_us), after, limit)


def due_cards_summary(connection: Connection, now_us: int, cap: int) -> DueSummary:
    """How many of the cards :func:`due_card_codes` pages through are due (at most ``cap``), and
    the balance (available + held, fen) they carry, which stays on them when they expire."""
    return due_summary(
        connection,
        gift_cards.c.code,
        gift_cards.c.available + gift_cards.c.held,
        _due_card_conditions(now_us),
        cap,
    )


def _due_card_conditions(now_us: int) -> list[Any]:
    return [gift_cards.c.state.in_(EXPIRABLE_STATES), gift_cards.c.expires_at_us <= now_us]


def expire_card(connection: Connection, code: str, state: str, now_us: int) -> bool:
    """The card (still in ``state``) becomes EXPIRED."""
    updated = connection.execute(
        gift_cards.update()
        .where(gift_cards.c.code == code, gift_cards.c.state == state)
        .values(state=EXPIRED, updated_at_us=now_us)
    )
    return updated.rowcount == 1
