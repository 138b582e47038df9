"""The statements of a call of cash-only charges (engine.service.cash_charges): what its checks
read, then every row its accepted charges write.

On PostgreSQL each half is one round trip (engine.storage.pipeline): the key claims, the CASH
rows locked in user order, the earlier claims of the keys not claimed now, the users' wallets
and the orders' live charges; then the refused charges' claims released, the charge rows, one
conditional debit per user, the legs and the ledger. On SQLite the same statements run one by
one (no round trips to save; writers are serialized by the database lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from engine.domain.money import Asset
from engine.domain.results import WalletView
from engine.storage.audit_trail import ChainHeads, lock_heads_queries
from engine.storage.balances import (
    debit_available_many,
    debit_available_many_query,
    lock_balances,
    lock_balances_query,
)
from engine.storage.bulk import Columns, is_postgresql
from engine.storage.charges import (
    NewCharge,
    insert_charges,
    insert_charges_query,
    insert_legs_of_charges,
    insert_legs_query,
    live_orders,
    live_orders_query,
)
from engine.storage.idempotency import (
    StoredKey,
    claim_keys,
    claim_keys_query,
    read_keys,
    read_keys_query,
    release_keys,
    release_keys_query,
)
from engine.storage.ledger import TransactionRecord, append_transactions, append_transactions_queries
from engine.storage.pipeline import Query, run_pipelined
from engine.storage.wallets import balance_wallets_query, read_balance_wallets

__all__ = ["CashChargeReads", "read_for_cash_charges", "write_cash_charges"]

Pair = tuple[int, str]
Order = tuple[int, str, str]


@dataclass(frozen=True)
class CashChargeReads:
    """What the checks of a call of cash charges decide from."""

    #: ``(user_id, key)`` pairs this call claimed.
    claimed: set[Pair]
    #: The earlier claims of the pairs it did not claim (a replay, a reuse, one still in flight).
    earlier: dict[Pair, StoredKey]
    #: Each user's balances-only wallet, read after their CASH rows were locked.
    wallets: dict[int, WalletView]
    #: Which of the orders already have a live charge.
    live: set[Order]


def read_for_cash_charges(
    connection: Connection, claims: Columns, orders: Sequence[Order], now_us: int
) -> CashChargeReads:
    """Claim the keys of ``claims`` (the columns :func:`engine.storage.idempotency.claim_keys`
    takes), lock the users' CASH rows in user order and read what the checks need."""
    pairs = list(zip(claims["user_id"], claims["idempotency_key"], strict=True))
    users = sorted(set(claims["user_id"]))
    if is_postgresql(connection):
        claimed, _locked, stored, wallets, live = run_pipelined(
            connection,
            [
                claim_keys_query(claims),
                lock_balances_query(Asset.CASH, users),
                read_keys_query(pairs),
                balance_wallets_query(users, now_us),
                live_orders_query(orders),
            ],
        )
        earlier = {pair: stored[pair] for pair in pairs if pair not in claimed and pair in stored}
        return CashChargeReads(claimed, earlier, wallets, live)
    claimed = claim_keys(connection, claims)
    earlier = read_keys(connection, [pair for pair in pairs if pair not in claimed])
    lock_balances(connection, Asset.CASH, users)
    return CashChargeReads(
        claimed, earlier, read_balance_wallets(connection, users, now_us), live_orders(connection, orders)
    )


def write_cash_charges(
    connection: Connection,
    *,
    released: Sequence[Pair],
    charges: Sequence[NewCharge],
    debits: Sequence[tuple[int, int]],
    legs: Sequence[tuple[str, dict[str, object]]],
    records: Sequence[TransactionRecord],
    lock_heads_of: Sequence[int] = (),
) -> tuple[dict[int, int], ChainHeads]:
    """Release the refused charges' claims and write the accepted ones: charge rows (the
    live-order index may refuse one: ``IntegrityError``), one conditional CASH debit per user,
    legs, ledger. The answer is each debited user's CASH ``available`` afterwards, and (PostgreSQL,
    in the same round trip) the audit chain heads of ``lock_heads_of`` (ascending), locked for
    the rest of the transaction — what the batch's audit rows are chained after at COMMIT."""
    if is_postgresql(connection):
        queries: list[Query[Any]] = [release_keys_query(released)] if released else []
        debit_at = heads_at = -1
        if charges:
            queries.append(insert_charges_query(charges))
            debit_at = len(queries)
            queries += [
                debit_available_many_query(Asset.CASH, debits),
                insert_legs_query(legs),
                *append_transactions_queries(records),
            ]
            if lock_heads_of:
                queries += lock_heads_queries(lock_heads_of)
                heads_at = len(queries) - 1  # the last one reads the locked heads
        if not queries:
            return {}, {}
        answers = run_pipelined(connection, queries)
        after: dict[int, int] = answers[debit_at] if debit_at >= 0 else {}
        heads: ChainHeads = answers[heads_at] if heads_at >= 0 else {}
        return after, heads
    release_keys(connection, released)
    if not charges:
        return {}, {}
    insert_charges(connection, charges)
    after = debit_available_many(connection, Asset.CASH, debits)
    insert_legs_of_charges(connection, legs)
    append_transactions(connection, records)
    return after, {}
