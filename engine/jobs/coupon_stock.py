"""``python -m engine.jobs.coupon_stock report|move``: the operator's command line for coupon stock
across physical shards (the use cases are :mod:`engine.service.coupon_stock`).

Connects with the server's configuration (``COFFER_*`` variables). Exit status: 0 done, 1 the
engine refused the request (its reason and message on standard error).
"""

from __future__ import annotations

import argparse
import sys

from engine.config import load_settings
from engine.domain.errors import CofferError
from engine.service import coupon_stock as stock_service
from engine.service.context import EngineContext
from engine.storage.shards import open_router

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.jobs.coupon_stock", description=stock_service.__doc__
    )
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
    context = EngineContext(open_router(settings, pool_size=2), settings)
    try:
        if arguments.command == "report":
            for line in stock_service.stock_report(context, arguments.template_id):
                print(
                    f"shard {line.shard}: allotted {line.allotted} "
                    f"remaining {line.remaining} issued {line.issued}"
                )
        else:
            moved = stock_service.move_stock(
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
