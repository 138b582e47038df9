"""Coupon stock across physical databases: a report, and the rebalance that moves unclaimed
stock from one physical shard to another (docs/coupons.md).

A template's stock is split into per-virtual-shard allotments living on each virtual shard's
database; a claim only ever takes from allotments on its own database. When one database runs
dry while another still holds stock (users unevenly spread over shards), the remainder there is
"stranded" for this database's users until an operator moves some of it:

    python -m engine.jobs.coupon_stock report TEMPLATE_ID
    python -m engine.jobs.coupon_stock move TEMPLATE_ID --from 0 --to 1 --units 50 --transfer-id T1

A move is two transactions, source first: the source gives up ``units`` of unclaimed stock
(``allotment`` and ``remaining`` both drop, by conditional UPDATEs) and records transfer ``OUT``;
then the target records ``IN`` and adds the units to its allotments. Between the two the units
exist on neither database, so the stock can only be under-issued, never over-issued; rerunning
the same ``transfer_id`` after a crash skips the side already done and completes the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.validation import require_reference
from engine.service.context import EngineContext
from engine.storage.coupon_stock import add_stock, give_up_stock, record_transfer, split_stock, stock_totals
from engine.storage.coupon_templates import read_template, template_not_found
from engine.storage.coupons import count_issued
from engine.storage.database import read_only
from engine.storage.router import Shard
from engine.storage.unit_of_work import UnitOfWork, run_transaction

__all__ = ["ShardStock", "move_stock", "stock_report"]


@dataclass(frozen=True)
class ShardStock:
    shard: int
    allotted: int
    remaining: int
    issued: int


def stock_report(context: EngineContext, template_id: str) -> list[ShardStock]:
    report = []
    for shard in context.router.shards:
        with read_only(shard.engine) as connection:
            allotted, remaining = stock_totals(connection, template_id)
            issued = count_issued(connection, template_id)
        report.append(ShardStock(shard.index, allotted, remaining, issued))
    return report


def _once(context: EngineContext, shard: Shard, work: Callable[[Connection], int]) -> int:
    def attempt() -> int:
        with UnitOfWork(shard.engine) as unit:
            done: int = work(unit.connection)
            unit.commit()
            return done

    return run_transaction(attempt, attempts=context.settings.transaction_attempts)


def move_stock(
    context: EngineContext, template_id: str, *, from_shard: int, to_shard: int, units: int, transfer_id: str
) -> int:
    """Move ``units`` of unclaimed stock of ``template_id`` between physical shards; returns the
    units now credited on the target by this transfer (0 if it had been completed before)."""
    shards = context.router.shards
    require_reference("transfer_id", transfer_id, required=True)
    if not (0 <= from_shard < len(shards) and 0 <= to_shard < len(shards)) or from_shard == to_shard:
        raise invalid_argument("to_shard", "name two different physical shards")
    if units <= 0:
        raise invalid_argument("units", "must be greater than zero")
    source, target = shards[from_shard], shards[to_shard]

    def take(connection: Connection) -> int:
        if read_template(connection, template_id) is None:
            raise template_not_found(template_id, "template_id")
        if not record_transfer(connection, transfer_id, "OUT", template_id, units, context.now_us()):
            return 0
        if give_up_stock(connection, template_id, units):
            raise CofferError(
                Reason.STOCK_EXHAUSTED,
                f"shard {from_shard} holds less than {units} unclaimed units of {template_id}",
                metadata={"template_id": template_id, "shard": str(from_shard)},
            )
        return units

    def give(connection: Connection) -> int:
        if read_template(connection, template_id) is None:
            raise template_not_found(template_id, "template_id")
        if not record_transfer(connection, transfer_id, "IN", template_id, units, context.now_us()):
            return 0
        virtuals = [
            virtual
            for virtual in range(context.router.virtual_shards)
            if context.router.for_virtual(virtual).index == to_shard
        ]
        # The units spread over the target's virtual shards as a template's stock is split.
        for virtual, share in zip(virtuals, split_stock(units, len(virtuals)), strict=True):
            if share:
                add_stock(connection, template_id, virtual, share)
        return units

    _once(context, source, take)
    return _once(context, target, give)
