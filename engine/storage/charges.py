"""Charge rows, their legs, items and refunds: every statement on them.

A charge's status changes only through :func:`change_status`, which applies the domain's table
(:mod:`engine.domain.charge_status`) as one conditional ``UPDATE ... WHERE status = :from``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, text
from sqlalchemy.exc import IntegrityError

from engine.domain.charge_status import ChargeEvent, ChargeStatus, transition
from engine.domain.leg_kind import LegKind
from engine.domain.results import Breakdown, ChargeView, RefundView
from engine.domain.serialization import loads
from engine.storage.bulk import insert_rows, insert_rows_query, is_postgresql, pg_arrays
from engine.storage.pipeline import Query
from engine.storage.scans import DueSummary, due_keys, due_summary
from engine.storage.schema import LIVE_CHARGE_STATUSES, charge_items, charge_legs, charges, refunds

__all__ = [
    "ORDER_CHARGE_KIND",
    "LegRow",
    "NewCharge",
    "add_item_refund",
    "add_leg_totals",
    "change_status",
    "charge_view",
    "due_hold_ids",
    "due_holds_summary",
    "insert_charge",
    "insert_charges",
    "insert_charges_query",
    "insert_items",
    "insert_legs",
    "insert_legs_of_charges",
    "insert_legs_query",
    "insert_refund",
    "is_live_order_conflict",
    "live_charge_for_order",
    "live_orders",
    "live_orders_query",
    "lock_charge",
    "read_charge_row",
    "read_items",
    "read_legs",
    "record_points_clawed_back",
    "record_points_earned",
]

#: The ``kind`` of a charge made by Charge (till redemptions name their own).
ORDER_CHARGE_KIND = "CHARGE"


@dataclass(frozen=True)
class NewCharge:
    """A ``charges`` row as inserted (the amounts in fen)."""

    charge_id: str
    user_id: int
    kind: str
    order_id: str
    merchant_id: str
    amount: int
    status: ChargeStatus
    transaction_id: str
    breakdown: str
    created_at_us: int
    channel_id: str = ""
    discount: int = 0
    points_used: int = 0
    points_value: int = 0
    coins_used: int = 0
    gift_card_amount: int = 0
    cash_amount: int = 0
    authorized_amount: int = 0
    captured_amount: int = 0
    hold_expires_at_us: int | None = None


# Built once: a statement object built per call costs a cache-key walk on every execution.
_INSERT_CHARGE = charges.insert()
_INSERT_ITEMS = charge_items.insert()
_INSERT_LEGS = charge_legs.insert()
_INSERT_REFUND = refunds.insert()


def insert_charge(connection: Connection, charge: NewCharge) -> None:
    """Insert a charge row; the live-order unique index may refuse it (``IntegrityError``)."""
    values: dict[str, Any] = asdict(charge)
    values["status"] = charge.status.value
    connection.execute(
        _INSERT_CHARGE,
        dict(values, refunded_amount=0, released_amount=0, updated_at_us=charge.created_at_us),
    )


def is_live_order_conflict(error: IntegrityError) -> bool:
    """Whether the live-order unique index refused a charge row (PostgreSQL names the index,
    SQLite its columns)."""
    message = str(error.orig)
    return "ux_charges_live_order" in message or "charges.user_id" in message


#: Columns a new charge row starts with beyond :class:`NewCharge`'s fields.
_NEW_CHARGE_FIELDS = tuple(NewCharge.__dataclass_fields__)


def insert_charges(connection: Connection, new_charges: Sequence[NewCharge]) -> None:
    """:func:`insert_charge` for many charges in one statement; the live-order unique index may
    refuse it (``IntegrityError``, failing the transaction)."""
    if new_charges:
        insert_rows(connection, charges, _charge_columns(new_charges))


def insert_charges_query(new_charges: Sequence[NewCharge]) -> Query[None]:
    """:func:`insert_charges` as one statement of a pipeline (PostgreSQL)."""
    return insert_rows_query(charges, _charge_columns(new_charges))


def _charge_columns(new_charges: Sequence[NewCharge]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: [getattr(charge, name) for charge in new_charges] for name in _NEW_CHARGE_FIELDS
    }
    columns["status"] = [charge.status.value for charge in new_charges]
    columns["refunded_amount"] = [0] * len(new_charges)
    columns["released_amount"] = [0] * len(new_charges)
    columns["updated_at_us"] = list(columns["created_at_us"])
    return columns


def insert_legs_of_charges(connection: Connection, legs: Sequence[tuple[str, dict[str, object]]]) -> None:
    """:func:`insert_legs` for the legs of many charges (``(charge_id, leg row)`` pairs) in one
    statement."""
    if legs:
        insert_rows(connection, charge_legs, _leg_columns(legs))


def insert_legs_query(legs: Sequence[tuple[str, dict[str, object]]]) -> Query[None]:
    """:func:`insert_legs_of_charges` as one statement of a pipeline (PostgreSQL)."""
    return insert_rows_query(charge_legs, _leg_columns(legs))


def _leg_columns(legs: Sequence[tuple[str, dict[str, object]]]) -> dict[str, list[object]]:
    names = ("leg_index", "kind", "instrument", "value", "units", "captured_value", "captured_units")
    columns: dict[str, list[object]] = {"charge_id": [charge_id for charge_id, _ in legs]}
    for name in names:
        columns[name] = [row[name] for _, row in legs]
    return columns


def insert_items(connection: Connection, charge_id: str, items: Sequence[dict[str, object]]) -> None:
    if items:
        connection.execute(_INSERT_ITEMS, [{"charge_id": charge_id, **item} for item in items])


def read_items(connection: Connection, charge_id: str) -> list[Row[Any]]:
    return list(connection.execute(select(charge_items).where(charge_items.c.charge_id == charge_id)).all())


def add_item_refund(
    connection: Connection, charge_id: str, line_index: int, quantity: int, value: int
) -> None:
    connection.execute(
        charge_items.update()
        .where(charge_items.c.charge_id == charge_id, charge_items.c.line_index == line_index)
        .values(
            refunded_quantity=charge_items.c.refunded_quantity + quantity,
            refunded_value=charge_items.c.refunded_value + value,
        )
    )


def change_status(
    connection: Connection,
    charge_id: str,
    current: ChargeStatus,
    event: ChargeEvent,
    now_us: int,
    *,
    captured_amount: int | None = None,
    released_amount: int | None = None,
    refunded_amount: int | None = None,
    refunded_before: int | None = None,
) -> ChargeStatus | None:
    """Move the charge by ``event`` (the domain table names the target; an illegal pair raises),
    setting the given amounts. ``None`` when the row is no longer in ``current`` (or, with
    ``refunded_before``, its refunded amount moved): someone else resolved it first."""
    target = transition(current, event)
    parameters: dict[str, Any] = {
        "p_charge_id": charge_id,
        "p_current": current.value,
        "p_target": target.value,
        "p_now_us": now_us,
    }
    if refunded_before is not None:
        parameters["p_refunded_before"] = refunded_before
    amounts = {
        column: amount
        for column, amount in (
            ("captured_amount", captured_amount),
            ("released_amount", released_amount),
            ("refunded_amount", refunded_amount),
        )
        if amount is not None
    }
    parameters |= {f"p_{column}": amount for column, amount in amounts.items()}
    statement = _change_status_statement(refunded_before is not None, tuple(amounts))
    updated = connection.execute(statement, parameters)
    return target if updated.rowcount == 1 else None


@functools.cache
def _change_status_statement(checks_refunded: bool, amount_columns: tuple[str, ...]) -> Any:
    """Built once per shape (:data:`_ADD_LEG_TOTALS` says why): ``WHERE status = :current``
    (and the refunded amount, when given), setting the target status, the time and the given
    amounts."""
    conditions = [charges.c.charge_id == bindparam("p_charge_id"), charges.c.status == bindparam("p_current")]
    if checks_refunded:
        conditions.append(charges.c.refunded_amount == bindparam("p_refunded_before"))
    values: dict[str, Any] = {"status": bindparam("p_target"), "updated_at_us": bindparam("p_now_us")}
    values |= {column: bindparam(f"p_{column}") for column in amount_columns}
    return charges.update().where(*conditions).values(**values)


#: Built once: SQLAlchemy took ~145 µs to build this statement and ~80 µs more to find it in
#: its compiled cache (every execute of a fresh statement walks it for the cache key), against
#: ~16 µs to execute it prebuilt (docs/performance.md, seventh session).
_ADD_LEG_TOTALS = (
    charge_legs.update()
    .where(
        charge_legs.c.charge_id == bindparam("p_charge_id"),
        charge_legs.c.leg_index == bindparam("p_leg_index"),
    )
    .values(
        captured_value=charge_legs.c.captured_value + bindparam("p_captured_value"),
        captured_units=charge_legs.c.captured_units + bindparam("p_captured_units"),
        released_value=charge_legs.c.released_value + bindparam("p_released_value"),
        released_units=charge_legs.c.released_units + bindparam("p_released_units"),
        refunded_value=charge_legs.c.refunded_value + bindparam("p_refunded_value"),
        refunded_units=charge_legs.c.refunded_units + bindparam("p_refunded_units"),
    )
)


def add_leg_totals(
    connection: Connection,
    charge_id: str,
    leg_index: int,
    *,
    captured: tuple[int, int] = (0, 0),
    released: tuple[int, int] = (0, 0),
    refunded: tuple[int, int] = (0, 0),
) -> None:
    """Add (value, units) to a leg row's captured, released and refunded totals."""
    connection.execute(
        _ADD_LEG_TOTALS,
        {
            "p_charge_id": charge_id,
            "p_leg_index": leg_index,
            "p_captured_value": captured[0],
            "p_captured_units": captured[1],
            "p_released_value": released[0],
            "p_released_units": released[1],
            "p_refunded_value": refunded[0],
            "p_refunded_units": refunded[1],
        },
    )


def record_points_earned(connection: Connection, charge_id: str, points: int, lot_id: str) -> None:
    connection.execute(
        charges.update()
        .where(charges.c.charge_id == charge_id)
        .values(points_earned=points, points_earned_lot_id=lot_id)
    )


def record_points_clawed_back(connection: Connection, charge_id: str, before: int, total: int) -> bool:
    """Set the charge's clawed-back total to ``total`` if it is still ``before``."""
    updated = connection.execute(
        charges.update()
        .where(charges.c.charge_id == charge_id, charges.c.points_clawed_back == before)
        .values(points_clawed_back=total)
    )
    return updated.rowcount == 1


def insert_refund(
    connection: Connection,
    *,
    refund_id: str,
    charge_id: str,
    user_id: int,
    amount: int,
    reason: str,
    breakdown: str,
    transaction_id: str,
    now_us: int,
) -> None:
    connection.execute(
        _INSERT_REFUND,
        {
            "refund_id": refund_id,
            "charge_id": charge_id,
            "user_id": user_id,
            "amount": amount,
            "reason": reason,
            "breakdown": breakdown,
            "transaction_id": transaction_id,
            "created_at_us": now_us,
        },
    )


def due_hold_ids(connection: Connection, now_us: int, after: str, limit: int) -> list[str]:
    """Up to ``limit`` AUTHORIZED charges past their hold expiry whose id sorts after ``after``."""
    return due_keys(connection, charges.c.charge_id, _due_hold_conditions(now_us), after, limit)


def due_holds_summary(connection: Connection, now_us: int, cap: int) -> DueSummary:
    """How many of the holds :func:`due_hold_ids` pages through are due (at most ``cap``), and the
    paid amount they authorize, in fen (points and coins counted at their fen value)."""
    return due_summary(
        connection, charges.c.charge_id, charges.c.authorized_amount, _due_hold_conditions(now_us), cap
    )


def _due_hold_conditions(now_us: int) -> list[Any]:
    return [charges.c.status == ChargeStatus.AUTHORIZED.value, charges.c.hold_expires_at_us <= now_us]


@dataclass(frozen=True)
class LegRow:
    leg_index: int
    kind: LegKind
    instrument: str
    value: int
    units: int
    captured_value: int
    captured_units: int
    released_value: int
    released_units: int
    refunded_value: int
    refunded_units: int


# Built once (:data:`_ADD_LEG_TOTALS` says why): every charge that is not cash-only looks it up.
_LIVE_CHARGE_FOR_ORDER = select(charges.c.charge_id).where(
    charges.c.user_id == bindparam("p_user_id"),
    charges.c.merchant_id == bindparam("p_merchant_id"),
    charges.c.order_id == bindparam("p_order_id"),
    charges.c.kind == ORDER_CHARGE_KIND,
    charges.c.status.in_(LIVE_CHARGE_STATUSES),
)


def live_charge_for_order(
    connection: Connection, user_id: int, merchant_id: str, order_id: str
) -> str | None:
    return connection.execute(
        _LIVE_CHARGE_FOR_ORDER, {"p_user_id": user_id, "p_merchant_id": merchant_id, "p_order_id": order_id}
    ).scalar_one_or_none()


_LIVE_ORDER_STATUSES = ", ".join(repr(status) for status in LIVE_CHARGE_STATUSES)
#: The orders arrive as three arrays (PostgreSQL) or one JSON list of triples (SQLite): one
#: statement text for any number of them. On PostgreSQL each order is looked up on its own
#: (``LATERAL … LIMIT 1``): a plain join let the planner, misled by stale statistics on a growing
#: table, scan the whole live-order index once per batch — 55% of the database's time per batch
#: at a few thousand charges, and growing with the table (docs/performance.md).
_LIVE_ORDERS = {
    "postgresql": text(
        "SELECT o.user_id, o.merchant_id, o.order_id FROM unnest("
        "CAST(:user_id AS BIGINT[]), CAST(:merchant_id AS TEXT[]), CAST(:order_id AS TEXT[])"
        ") AS o(user_id, merchant_id, order_id) CROSS JOIN LATERAL (SELECT 1 FROM charges AS c "
        "WHERE c.user_id = o.user_id AND c.merchant_id = o.merchant_id AND c.order_id = o.order_id "
        f"AND c.kind = '{ORDER_CHARGE_KIND}' AND c.status IN ({_LIVE_ORDER_STATUSES}) LIMIT 1) AS live"
    ),
    # SQLite: ``CROSS JOIN`` is its way to fix the join order. With a plain JOIN it made
    # ``charges`` the outer loop, reading every live charge through ix_charges_hold_expiry on
    # each batch: two thirds of the embedded engine's CPU at 64 callers, growing with the table.
    # The statuses and kind are the partial index's own terms, so the probe can use it.
    "sqlite": text(
        "SELECT o.user_id, o.merchant_id, o.order_id FROM ("
        "SELECT json_extract(value, '$[0]') AS user_id, json_extract(value, '$[1]') AS merchant_id, "
        "json_extract(value, '$[2]') AS order_id FROM json_each(:orders)) AS o CROSS JOIN charges AS c "
        "ON c.user_id = o.user_id AND c.merchant_id = o.merchant_id AND c.order_id = o.order_id "
        f"WHERE c.kind = '{ORDER_CHARGE_KIND}' AND c.status IN ({_LIVE_ORDER_STATUSES})"
    ),
}


def live_orders(connection: Connection, orders: Sequence[tuple[int, str, str]]) -> set[tuple[int, str, str]]:
    """Which ``(user_id, merchant_id, order_id)`` of ``orders`` already have a live charge (the
    rows :func:`insert_charge`'s unique index would refuse a second one for)."""
    if not orders:
        return set()
    if is_postgresql(connection):
        parameters: dict[str, str] = _orders_parameters(orders)
    else:
        parameters = {"orders": json.dumps([list(order) for order in orders])}
    return _live(connection.execute(_LIVE_ORDERS[connection.dialect.name], parameters).all())


def live_orders_query(orders: Sequence[tuple[int, str, str]]) -> Query[set[tuple[int, str, str]]]:
    """:func:`live_orders` as one statement of a pipeline (PostgreSQL)."""
    return Query(_LIVE_ORDERS["postgresql"], _orders_parameters(orders), lambda answer: _live(answer[0]))


def _orders_parameters(orders: Sequence[tuple[int, str, str]]) -> dict[str, str]:
    return pg_arrays(
        {
            "user_id": [user for user, _, _ in orders],
            "merchant_id": [merchant for _, merchant, _ in orders],
            "order_id": [order for _, _, order in orders],
        }
    )


def _live(rows: Sequence[Any]) -> set[tuple[int, str, str]]:
    return {(int(row.user_id), str(row.merchant_id), str(row.order_id)) for row in rows}


# Built once, like _ADD_LEG_TOTALS: the statements every capture, void and refund runs.
_CHARGE_ROW = select(charges).where(charges.c.charge_id == bindparam("p_charge_id"))
_CHARGE_ROW_LOCKED = _CHARGE_ROW.with_for_update()
_CHARGE_OWNERS = select(charges.c.charge_id, charges.c.user_id).where(
    charges.c.charge_id.in_(bindparam("p_charge_ids", expanding=True))
)
_LEGS = (
    select(charge_legs)
    .where(charge_legs.c.charge_id == bindparam("p_charge_id"))
    .order_by(charge_legs.c.leg_index)
)
_REFUNDS = (
    select(refunds)
    .where(refunds.c.charge_id == bindparam("p_charge_id"))
    .order_by(refunds.c.created_at_us, refunds.c.refund_id)
)
_COUPON_IDS = (
    select(charge_legs.c.instrument)
    .where(charge_legs.c.charge_id == bindparam("p_charge_id"), charge_legs.c.kind == LegKind.COUPON.value)
    .order_by(charge_legs.c.leg_index)
)


def lock_charge(connection: Connection, charge_id: str) -> Row | None:  # type: ignore[type-arg]
    """The charge row, locked for the rest of the transaction (PostgreSQL ``FOR UPDATE``;
    SQLite's ``BEGIN IMMEDIATE`` already serializes writers)."""
    return connection.execute(_CHARGE_ROW_LOCKED, {"p_charge_id": charge_id}).one_or_none()


def charge_owners(connection: Connection, charge_ids: Sequence[str]) -> dict[str, int]:
    """The user of each of ``charge_ids`` that is a charge, without a lock: a charge's user never
    changes (the group-commit writer orders a batch by it, engine.service.group_commit)."""
    if not charge_ids:
        return {}
    rows = connection.execute(_CHARGE_OWNERS, {"p_charge_ids": sorted(set(charge_ids))}).all()
    return {str(row.charge_id): int(row.user_id) for row in rows}


def read_charge_row(connection: Connection, charge_id: str) -> Row | None:  # type: ignore[type-arg]
    return connection.execute(_CHARGE_ROW, {"p_charge_id": charge_id}).one_or_none()


def read_legs(connection: Connection, charge_id: str) -> list[LegRow]:
    rows = connection.execute(_LEGS, {"p_charge_id": charge_id}).all()
    return [
        LegRow(
            leg_index=row.leg_index,
            kind=LegKind(row.kind),
            instrument=row.instrument,
            value=row.value,
            units=row.units,
            captured_value=row.captured_value,
            captured_units=row.captured_units,
            released_value=row.released_value,
            released_units=row.released_units,
            refunded_value=row.refunded_value,
            refunded_units=row.refunded_units,
        )
        for row in rows
    ]


def insert_legs(connection: Connection, charge_id: str, legs: Sequence[dict[str, object]]) -> None:
    if legs:
        connection.execute(_INSERT_LEGS, [{"charge_id": charge_id, **leg} for leg in legs])


def charge_view(connection: Connection, row: Row) -> ChargeView:  # type: ignore[type-arg]
    refund_rows = connection.execute(_REFUNDS, {"p_charge_id": row.charge_id}).all()
    coupon_ids = connection.execute(_COUPON_IDS, {"p_charge_id": row.charge_id}).scalars().all()
    return ChargeView(
        charge_id=row.charge_id,
        user_id=row.user_id,
        order_id=row.order_id,
        merchant_id=row.merchant_id,
        channel_id=row.channel_id,
        amount=row.amount,
        status=row.status,
        breakdown=loads(Breakdown, row.breakdown),
        authorized_amount=row.authorized_amount,
        captured_amount=row.captured_amount,
        refunded_amount=row.refunded_amount,
        released_amount=row.released_amount,
        hold_expires_at_us=row.hold_expires_at_us,
        created_at_us=row.created_at_us,
        transaction_id=row.transaction_id,
        refunds=tuple(
            RefundView(
                refund_id=refund.refund_id,
                charge_id=refund.charge_id,
                amount=refund.amount,
                reason=refund.reason,
                created_at_us=refund.created_at_us,
                breakdown=loads(Breakdown, refund.breakdown),
            )
            for refund in refund_rows
        ),
        coupon_ids=tuple(coupon_ids),
    )
