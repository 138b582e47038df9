"""The expiry job's bounded batch (:mod:`engine.jobs` drives it): scan up to ``limit`` due keys
after ``after`` (keyset paging), then resolve each in its own short transaction — written once for
holds, lots, cards, coupons. A dry run reads :func:`summarize_due` instead: one bounded count of
what the batches would page through, with no lock taken and no resolver called.

Each resolver locks its row and re-checks that it is still due, so a batch can run beside live
traffic, twice at once, or twice in a row, and every item changes at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from engine.domain.errors import CofferError
from engine.service.context import EngineContext
from engine.storage.database import read_only
from engine.storage.router import Shard
from engine.storage.scans import DueSummary
from engine.storage.unit_of_work import UnitOfWork, run_transaction

__all__ = ["BatchOutcome", "DueSummary", "run_batch", "summarize_due"]

logger = logging.getLogger("coffer.jobs")


@dataclass(frozen=True)
class BatchOutcome:
    #: Due items looked at in this batch (a batch shorter than its limit is the last one).
    seen: int
    #: Items this batch actually changed (0 on a second run).
    changed: int
    #: The key of the last item looked at: where the next batch starts.
    last_key: str
    #: Items that could not be resolved this run (logged; the next run retries them).
    failed: int = 0


def run_batch(
    context: EngineContext,
    shard: Shard,
    scan: Callable[[Connection], list[str]],
    resolve: Callable[[Connection, str], bool],
    what: str,
) -> BatchOutcome:
    """``scan`` (read-only, bounded by its own ``limit``) names the due keys; ``resolve`` changes
    one (True) or finds it no longer due (False). A failing item is logged and counted."""
    with read_only(shard.engine) as connection:
        keys = scan(connection)
    changed = failed = 0
    for key in keys:

        def attempt(key: str = key) -> bool:
            with UnitOfWork(shard.engine) as unit:
                did = resolve(unit.connection, key)
                unit.commit()
                return did

        try:
            if run_transaction(attempt, attempts=context.settings.transaction_attempts):
                changed += 1
        except CofferError as error:
            failed += 1
            logger.warning("expire %s %s on shard %d: %s", what, key, shard.index, error)
    return BatchOutcome(seen=len(keys), changed=changed, last_key=keys[-1] if keys else "", failed=failed)


def summarize_due(shard: Shard, summarize: Callable[[Connection], DueSummary]) -> DueSummary:
    """``summarize`` (a bounded storage summary) on a read-only connection: what is due on ``shard``
    without changing anything, so a dry run ends after one read per task and shard."""
    with read_only(shard.engine) as connection:
        return summarize(connection)
