"""Coupon stock across physical databases: a report, and the rebalance that moves unclaimed
stock from one physical shard to another (docs/coupons.md).

A template's stock is split into per-virtual-shard allotments living on each virtual shard's
database; a claim only ever takes from allotments on its own database. When one database runs
dry while another still holds stock (users unevenly spread over shards), the remainder there is
"stranded" for this database's users until an operator moves some of it:

    python -m engine.service.coupon_stock report TEMPLATE_ID
    python -m engine.service.coupon_stock move TEMPLATE_ID --from 0 --to 1 --units 50 --transfer-id T1

A move is two transactions, source first: the source gives up ``units`` of unclaimed stock
(``allotment`` and ``remaining`` both drop, by conditional UPDATEs) and records transfer ``OUT``;
then the target records ``IN`` and adds the units to its allotments. Between the two the units
exist on neither database, so the stock can only be under-issued, never over-issued; rerunning
the same ``transfer_id`` after a crash skips the side already done and completes the other.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.validation import require_reference
from engine.service.context import EngineContext
from engine.storage.coupons import read_template, template_not_found
from engine.storage.database import read_only
from engine.storage.dialect import insert_or_ignore
from engine.storage.router import Shard
from engine.storage.schema import coupon_stock, coupon_stock_transfers, user_coupons
from engine.storage.unit_of_work import UnitOfWork, run_transaction


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
            allotted, remaining = connection.execute(
                select(
                    func.coalesce(func.sum(coupon_stock.c.allotment), 0),
                    func.coalesce(func.sum(coupon_stock.c.remaining), 0),
                ).where(coupon_stock.c.template_id == template_id)
            ).one()
            issued = connection.execute(
                select(func.count()).where(user_coupons.c.template_id == template_id)
            ).scalar_one()
        report.append(ShardStock(shard.index, int(allotted), int(remaining), int(issued)))
    return report


def _once(context: EngineContext, shard: Shard, work: Callable[[Connection], int]) -> int:
    def attempt() -> int:
        with UnitOfWork(shard.engine) as unit:
            done: int = work(unit.connection)
            unit.commit()
            return done

    return run_transaction(attempt, attempts=context.settings.transaction_attempts)


def _record(
    connection: Connection, transfer_id: str, direction: str, template_id: str, units: int, now_us: int
) -> bool:
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
        if not _record(connection, transfer_id, "OUT", template_id, units, context.now_us()):
            return 0
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
        if left:
            raise CofferError(
                Reason.STOCK_EXHAUSTED,
                f"shard {from_shard} holds less than {units} unclaimed units of {template_id}",
                metadata={"template_id": template_id, "shard": str(from_shard)},
            )
        return units

    def give(connection: Connection) -> int:
        if read_template(connection, template_id) is None:
            raise template_not_found(template_id, "template_id")
        if not _record(connection, transfer_id, "IN", template_id, units, context.now_us()):
            return 0
        virtuals = [
            virtual
            for virtual in range(context.router.virtual_shards)
            if context.router.for_virtual(virtual).index == to_shard
        ]
        base, extra = divmod(units, len(virtuals))
        for position, virtual in enumerate(virtuals):
            share = base + (1 if position < extra else 0)
            if share == 0:
                continue
            insert_or_ignore(
                connection,
                coupon_stock,
                {"template_id": template_id, "virtual_shard": virtual, "allotment": 0, "remaining": 0},
            )
            connection.execute(
                coupon_stock.update()
                .where(coupon_stock.c.template_id == template_id, coupon_stock.c.virtual_shard == virtual)
                .values(
                    allotment=coupon_stock.c.allotment + share,
                    remaining=coupon_stock.c.remaining + share,
                )
            )
        return units

    _once(context, source, take)
    return _once(context, target, give)


def main(argv: list[str] | None = None) -> int:
    from engine.app import build_router
    from engine.config import load_settings

    parser = argparse.ArgumentParser(prog="python -m engine.service.coupon_stock", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="allotted / remaining / issued per physical shard")
    report.add_argument("template_id")
    move = commands.add_parser("move", help="move unclaimed stock between physical shards")
    move.add_argument("template_id")
    move.add_argument("--from", dest="from_shard", type=int, required=True)
    move.add_argument("--to", dest="to_shard", type=int, required=True)
    move.add_argument("--units", type=int, required=True)
    move.add_argument("--transfer-id", required=True)
    arguments = parser.parse_args(argv)
    settings = load_settings()
    context = EngineContext(build_router(settings), settings)
    try:
        if arguments.command == "report":
            for line in stock_report(context, arguments.template_id):
                print(
                    f"shard {line.shard}: allotted {line.allotted} "
                    f"remaining {line.remaining} issued {line.issued}"
                )
        else:
            moved = move_stock(
                context,
                arguments.template_id,
                from_shard=arguments.from_shard,
                to_shard=arguments.to_shard,
                units=arguments.units,
                transfer_id=arguments.transfer_id,
            )
            print(f"moved {moved} units" if moved else "transfer already complete")
    except CofferError as error:
        print(f"{error.reason.label}: {error.message}", file=sys.stderr)
        return 1
    finally:
        context.router.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
