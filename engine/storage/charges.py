"""Charge rows, their legs, items and refunds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Row, select

from engine.domain.results import Breakdown, ChargeView, RefundView
from engine.domain.serialization import loads
from engine.storage.schema import LIVE_CHARGE_STATUSES, charge_legs, charges, refunds


@dataclass(frozen=True)
class LegRow:
    leg_index: int
    kind: str
    instrument: str
    value: int
    units: int
    captured_value: int
    captured_units: int
    released_value: int
    released_units: int
    refunded_value: int
    refunded_units: int


def live_charge_for_order(
    connection: Connection, user_id: int, merchant_id: str, order_id: str
) -> str | None:
    return connection.execute(
        select(charges.c.charge_id).where(
            charges.c.user_id == user_id,
            charges.c.merchant_id == merchant_id,
            charges.c.order_id == order_id,
            charges.c.kind == "CHARGE",
            charges.c.status.in_(LIVE_CHARGE_STATUSES),
        )
    ).scalar_one_or_none()


def lock_charge(connection: Connection, charge_id: str) -> Row | None:  # type: ignore[type-arg]
    """The charge row, locked for the rest of the transaction (PostgreSQL ``FOR UPDATE``;
    SQLite's ``BEGIN IMMEDIATE`` already serializes writers)."""
    return connection.execute(
        select(charges).where(charges.c.charge_id == charge_id).with_for_update()
    ).one_or_none()


def read_charge_row(connection: Connection, charge_id: str) -> Row | None:  # type: ignore[type-arg]
    return connection.execute(select(charges).where(charges.c.charge_id == charge_id)).one_or_none()


def read_legs(connection: Connection, charge_id: str) -> list[LegRow]:
    rows = connection.execute(
        select(charge_legs).where(charge_legs.c.charge_id == charge_id).order_by(charge_legs.c.leg_index)
    ).all()
    return [
        LegRow(
            leg_index=row.leg_index,
            kind=row.kind,
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
        connection.execute(charge_legs.insert(), [{"charge_id": charge_id, **leg} for leg in legs])


def charge_view(connection: Connection, row: Row) -> ChargeView:  # type: ignore[type-arg]
    refund_rows = connection.execute(
        select(refunds)
        .where(refunds.c.charge_id == row.charge_id)
        .order_by(refunds.c.created_at_us, refunds.c.refund_id)
    ).all()
    coupon_ids = (
        connection.execute(
            select(charge_legs.c.instrument)
            .where(charge_legs.c.charge_id == row.charge_id, charge_legs.c.kind == "COUPON")
            .order_by(charge_legs.c.leg_index)
        )
        .scalars()
        .all()
    )
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
