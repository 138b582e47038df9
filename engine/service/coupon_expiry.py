"""The coupon part of the expiry job: ACTIVATED and FROZEN coupons past their validity end
become EXPIRED in the database (they already read as EXPIRED from that instant on, and every
use refuses them with COUPON_EXPIRED — the job only records what has already taken effect).

Keyset-paged batches (``coupon_id > after``), each coupon in its own short transaction under
its row lock, re-checked there, so the job can run beside live traffic, twice at once or twice
in a row and change each coupon at most once. Each expiry is journalled in ``coupon_events`` and
appears in the owner's history as an EXPIRE transaction without entries (no value moves).
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.coupons.states import EXPIRES_IN_PLACE, CouponEvent, is_past_validity
from engine.domain.ledger import TransactionType
from engine.service.batches import BatchOutcome, DueSummary, run_batch, summarize_due
from engine.service.context import EngineContext
from engine.service.movements import open_movement
from engine.storage.coupons import (
    change_state,
    expirable_coupon_ids,
    expirable_coupons_summary,
    read_coupon,
)
from engine.storage.router import Shard

_EXPIRABLE = tuple(state.value for state in EXPIRES_IN_PLACE)
#: Batches one :func:`expire_coupons` call runs per shard at most.
MAX_BATCHES_PER_CALL = 1_000


def _expire_one(context: EngineContext, connection: Connection, coupon_id: str, now_us: int) -> bool:
    row = read_coupon(connection, coupon_id, lock=True)
    if row is None or row.state not in _EXPIRABLE or not is_past_validity(row.expires_at_us, now_us):
        return False
    change_state(connection, row, CouponEvent.EXPIRE, now_us, reference="expiry job")
    # No value moves: an EXPIRE transaction without entries is the expiry's line in the history.
    open_movement(context, connection, row.user_id, now_us).record(
        TransactionType.EXPIRE, memo=f"coupon {coupon_id} expired ({row.state})"
    )
    return True


def expire_coupons_batch(
    context: EngineContext, shard: Shard, now_us: int, limit: int, after: str
) -> BatchOutcome:
    """One batch on one shard: up to ``limit`` due coupons whose id sorts after ``after``."""

    def scan(connection: Connection) -> list[str]:
        return expirable_coupon_ids(connection, _EXPIRABLE, now_us, after, limit)

    return run_batch(
        context,
        shard,
        scan,
        lambda connection, coupon_id: _expire_one(context, connection, coupon_id, now_us),
        "coupon",
    )


def preview_coupons(context: EngineContext, shard: Shard, now_us: int, cap: int) -> DueSummary:
    """Dry run: how many coupons on ``shard`` the job would expire (at most ``cap``); no value moves."""
    return summarize_due(
        shard, lambda connection: expirable_coupons_summary(connection, _EXPIRABLE, now_us, cap)
    )


def expire_coupons(context: EngineContext, now_us: int, batch_size: int) -> int:
    """Every shard, batch after batch, until a batch comes back short; returns coupons expired."""
    expired = 0
    for shard in context.router.shards:
        after = ""
        for _batch in range(MAX_BATCHES_PER_CALL):
            outcome = expire_coupons_batch(context, shard, now_us, batch_size, after)
            expired += outcome.changed
            if outcome.seen < batch_size:
                break
            after = outcome.last_key
    return expired
