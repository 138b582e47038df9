"""Fill PostgreSQL shard databases with ledger history fast, for ``make bench-scale``.

Set-based SQL (``INSERT ... SELECT FROM generate_series``), not the engine: ten million entries
through the gRPC API would take hours on this machine. What is written is what the audit
(engine/storage/audit.py) can check and must still find whole:

* ``accounts``: one wallet per preloaded user, on its own virtual shard;
* ``ledger_transactions``: TOP_UP transactions with a unique memo per user (one credit per
  channel transaction) and no idempotency key (so no key row is owed);
* ``ledger_entries``: two per transaction that sum to zero, ``topup_clearing:preload`` debited and
  the user's available CASH credited, as a top-up posts them;
* ``balances``: each user's CASH available equal to the sum of their entries.

Users are ``PRELOAD_USER_BASE + k`` chosen so that each lands on the physical shard it is written
to (``user_id % virtual_shards % physical_shards``, engine/storage/router.py), far from the
harness's random user ids.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg

__all__ = ["ENTRIES_PER_TRANSACTION", "PRELOAD_USER_BASE", "PreloadPlan", "count_entries", "preload_shards"]

ENTRIES_PER_TRANSACTION = 2
#: Even, and a multiple of every virtual shard count, so ``base + k`` has virtual shard ``k % V``.
PRELOAD_USER_BASE = 9 * 10**15 - (9 * 10**15) % 1024
TRANSACTIONS_PER_USER = 50
PRELOAD_CHANNEL = "preload"
#: Entries per INSERT statement, so no single statement holds minutes of work and memory.
BATCH_TRANSACTIONS = 500_000
MAX_ENTRIES = 100_000_000
MIN_AMOUNT_FEN, AMOUNT_SPREAD_FEN = 100, 9_900


@dataclass(frozen=True)
class PreloadPlan:
    shard_index: int
    shard_count: int
    virtual_shards: int
    transactions: int
    created_at_us: int

    @property
    def users(self) -> int:
        return max(1, self.transactions // TRANSACTIONS_PER_USER)


def _user_sql(plan: PreloadPlan, ordinal: str) -> str:
    """SQL for the id of this shard's ``ordinal``-th preloaded user: the ``ordinal``-th virtual
    shard that maps to this physical shard, cycled with a stride of whole virtual-shard rounds."""
    per_round = len(range(plan.shard_index, plan.virtual_shards, plan.shard_count))
    return (
        f"({PRELOAD_USER_BASE} + (({ordinal}) / {per_round}) * {plan.virtual_shards} "
        f"+ {plan.shard_index} + (({ordinal}) % {per_round}) * {plan.shard_count})"
    )


def _amount_sql(number: str) -> str:
    return f"({MIN_AMOUNT_FEN} + ({number}) % {AMOUNT_SPREAD_FEN})"


def _preload_one(dsn: str, plan: PreloadPlan) -> None:
    user = _user_sql(plan, f"n % {plan.users}")
    tid = f"'txpre{plan.shard_index}_' || n"
    with psycopg.connect(dsn, autocommit=False) as connection:
        connection.execute("SET synchronous_commit = off")
        connection.execute(
            "INSERT INTO accounts "
            "(user_id, virtual_shard, frozen, frozen_reason, points_debt, created_at_us) "
            f"SELECT {_user_sql(plan, 'u')}, {_user_sql(plan, 'u')} % {plan.virtual_shards}, false, '', 0, "
            f"{plan.created_at_us} FROM generate_series(0, {plan.users - 1}) AS u"
        )
        for first in range(0, plan.transactions, BATCH_TRANSACTIONS):
            last = min(plan.transactions, first + BATCH_TRANSACTIONS) - 1
            series = f"generate_series({first}, {last}) AS n"
            connection.execute(
                "INSERT INTO ledger_transactions (transaction_id, user_id, type, idempotency_key, charge_id, "
                f"memo, created_at_us) SELECT {tid}, {user}, 'TOP_UP', '', '', "
                f"'{PRELOAD_CHANNEL}:' || n, {plan.created_at_us} + n FROM {series}"
            )
            connection.execute(
                "INSERT INTO ledger_entries "
                "(transaction_id, account, user_id, asset, bucket, instrument, amount) "
                f"SELECT {tid}, 'topup_clearing:{PRELOAD_CHANNEL}', NULL, 'CASH', '', '', "
                f"-{_amount_sql('n')} "
                f"FROM {series} UNION ALL "
                f"SELECT {tid}, 'user', {user}, 'CASH', 'available', '', {_amount_sql('n')} FROM {series}"
            )
            connection.commit()
        connection.execute(
            "INSERT INTO balances (user_id, asset, available, held) "
            f"SELECT {user}, 'CASH', SUM({_amount_sql('n')}), 0 "
            f"FROM generate_series(0, {plan.transactions - 1}) AS n GROUP BY 1"
        )
        connection.commit()
    # As ``pgbench -i`` finishes its load: vacuumed (visibility map set, so autovacuum has no
    # ten-million-row pass left to start during the measurement), analyzed, and checkpointed (so
    # the first change to each loaded page does not write a full-page image into the measured
    # WAL). The loaded phase measures tables that are present, not a bulk load just finished.
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in ("accounts", "balances", "ledger_transactions", "ledger_entries"):
            connection.execute(f"VACUUM (ANALYZE) {table}")
        connection.execute("CHECKPOINT")


def preload_shards(dsns: list[str], entries: int, *, virtual_shards: int, created_at_us: int) -> int:
    """Write about ``entries`` ledger entries spread over the shard databases (in parallel, one
    connection each); returns how many were written."""
    if not 0 < entries <= MAX_ENTRIES:
        raise ValueError(f"entries must be within 1..{MAX_ENTRIES}")
    per_shard = max(1, entries // ENTRIES_PER_TRANSACTION // len(dsns))
    plans = [
        PreloadPlan(index, len(dsns), virtual_shards, per_shard, created_at_us) for index in range(len(dsns))
    ]
    with ThreadPoolExecutor(max_workers=len(dsns), thread_name_prefix="preload") as pool:
        list(pool.map(_preload_one, dsns, plans))
    return per_shard * len(dsns) * ENTRIES_PER_TRANSACTION


def count_entries(dsns: list[str]) -> int:
    total = 0
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as connection:
            row = connection.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()
            total += int(row[0]) if row else 0
    return total
