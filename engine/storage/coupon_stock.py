"""Coupon stock: per-virtual-shard allotments on each virtual shard's database, the per-user claim
counters, and the journal of stock moved between databases (docs/coupons.md)."""

from __future__ import annotations

import random

from sqlalchemy import Connection, bindparam, func, select

from engine.domain.errors import CofferError, Reason
from engine.storage.dialect import insert_or_ignore
from engine.storage.schema import coupon_claims, coupon_stock, coupon_stock_transfers

__all__ = [
    "MAX_STOCK_PROBES",
    "MAX_STOCK_ROUNDS",
    "add_stock",
    "count_claim",
    "give_up_stock",
    "insert_allotments",
    "record_transfer",
    "split_stock",
    "stock_totals",
    "take_stock",
]

#: When its own virtual shard's allotment is empty, a claim probes at most this many other
#: allotments on the same database per round, for at most this many rounds.
MAX_STOCK_PROBES = 8
MAX_STOCK_ROUNDS = 3

_random = random.SystemRandom()


def split_stock(total_stock: int, virtual_shards: int) -> list[int]:
    """Virtual shard ``v``'s allotment: an equal share, the first ``total % V`` one more."""
    base, extra = divmod(total_stock, virtual_shards)
    return [base + (1 if virtual < extra else 0) for virtual in range(virtual_shards)]


def insert_allotments(connection: Connection, template_id: str, allotments: dict[int, int]) -> None:
    """This database's allotments (virtual shard -> units), in one statement; rows of 0 are not
    stored. Runs inside the template's idempotent transaction, so it happens once per shard."""
    rows = [
        {"template_id": template_id, "virtual_shard": virtual_shard, "allotment": units, "remaining": units}
        for virtual_shard, units in sorted(allotments.items())
        if units > 0
    ]
    if rows:
        connection.execute(coupon_stock.insert(), rows)


# Built once (engine.storage.charges._ADD_LEG_TOTALS says why).
_DECREMENT = (
    coupon_stock.update()
    .where(
        coupon_stock.c.template_id == bindparam("p_template_id"),
        coupon_stock.c.virtual_shard == bindparam("p_virtual_shard"),
        coupon_stock.c.remaining > 0,
    )
    .values(remaining=coupon_stock.c.remaining - 1)
)


def _decrement(connection: Connection, template_id: str, virtual_shard: int) -> bool:
    updated = connection.execute(_DECREMENT, {"p_template_id": template_id, "p_virtual_shard": virtual_shard})
    return updated.rowcount == 1


def take_stock(connection: Connection, template_id: str, virtual_shard: int) -> bool:
    """Take one unit of ``template_id``'s stock on this database; False when none is left here.

    First the claimant's own virtual shard's allotment; when that is empty, other allotments on
    the same database (those with the most left, probed in random order so that spilling claims
    do not all queue on one row), for a bounded number of rounds. Every decrement is a
    conditional UPDATE, so concurrent claims can never take a unit twice.
    """
    if _decrement(connection, template_id, virtual_shard):
        return True
    for _round in range(MAX_STOCK_ROUNDS):
        candidates = list(
            connection.execute(
                select(coupon_stock.c.virtual_shard)
                .where(
                    coupon_stock.c.template_id == template_id,
                    coupon_stock.c.remaining > 0,
                    coupon_stock.c.virtual_shard != virtual_shard,
                )
                .order_by(coupon_stock.c.remaining.desc(), coupon_stock.c.virtual_shard)
                .limit(MAX_STOCK_PROBES)
            ).scalars()
        )
        if not candidates:
            return False
        _random.shuffle(candidates)
        for candidate in candidates:
            if _decrement(connection, template_id, candidate):
                return True
    raise CofferError(
        Reason.CONTENTION,
        "coupon stock is being claimed too fast to find a unit; retry with the same key",
        metadata={"template_id": template_id},
    )


def count_claim(connection: Connection, user_id: int, template_id: str, limit: int) -> bool:
    """Count one more claim of ``template_id`` by ``user_id``; False at the limit.

    The counter row is locked by the conditional UPDATE, so concurrent claims by one user
    queue on it and at most ``limit`` ever succeed.
    """
    insert_or_ignore(
        connection, coupon_claims, {"user_id": user_id, "template_id": template_id, "claimed": 0}
    )
    updated = connection.execute(
        coupon_claims.update()
        .where(
            coupon_claims.c.user_id == user_id,
            coupon_claims.c.template_id == template_id,
            coupon_claims.c.claimed < limit,
        )
        .values(claimed=coupon_claims.c.claimed + 1)
    )
    return updated.rowcount == 1


def stock_totals(connection: Connection, template_id: str) -> tuple[int, int]:
    """``(allotted, remaining)`` of ``template_id`` summed over this database's allotments."""
    allotted, remaining = connection.execute(
        select(
            func.coalesce(func.sum(coupon_stock.c.allotment), 0),
            func.coalesce(func.sum(coupon_stock.c.remaining), 0),
        ).where(coupon_stock.c.template_id == template_id)
    ).one()
    return int(allotted), int(remaining)


def record_transfer(
    connection: Connection, transfer_id: str, direction: str, template_id: str, units: int, now_us: int
) -> bool:
    """Journal one side (``OUT`` / ``IN``) of a stock move; False when that side was done before."""
    return insert_or_ignore(
        connection,
        coupon_stock_transfers,
        {
            "transfer_id": transfer_id,
            "direction": direction,
            "template_id": template_id,
            "units": units,
            "created_at_us": now_us,
        },
    )


def give_up_stock(connection: Connection, template_id: str, units: int) -> int:
    """Remove up to ``units`` of unclaimed stock from this database's allotments (``allotment``
    and ``remaining`` both drop), fullest allotments first, under their row locks; returns the
    units it could not find."""
    left = units
    rows = connection.execute(
        select(coupon_stock.c.virtual_shard, coupon_stock.c.remaining)
        .where(coupon_stock.c.template_id == template_id, coupon_stock.c.remaining > 0)
        .order_by(coupon_stock.c.remaining.desc(), coupon_stock.c.virtual_shard)
        .with_for_update()
    ).all()
    for row in rows:
        if left == 0:
            break
        step = min(left, int(row.remaining))
        updated = connection.execute(
            coupon_stock.update()
            .where(
                coupon_stock.c.template_id == template_id,
                coupon_stock.c.virtual_shard == row.virtual_shard,
                coupon_stock.c.remaining >= step,
            )
            .values(
                allotment=coupon_stock.c.allotment - step,
                remaining=coupon_stock.c.remaining - step,
            )
        )
        if updated.rowcount == 1:
            left -= step
    return left


def add_stock(connection: Connection, template_id: str, virtual_shard: int, units: int) -> None:
    """Add ``units`` to ``virtual_shard``'s allotment of ``template_id`` (creating the row)."""
    insert_or_ignore(
        connection,
        coupon_stock,
        {"template_id": template_id, "virtual_shard": virtual_shard, "allotment": 0, "remaining": 0},
    )
    connection.execute(
        coupon_stock.update()
        .where(coupon_stock.c.template_id == template_id, coupon_stock.c.virtual_shard == virtual_shard)
        .values(
            allotment=coupon_stock.c.allotment + units,
            remaining=coupon_stock.c.remaining + units,
        )
    )
