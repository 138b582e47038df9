"""The statements of a call of cash-only charges (engine.service.cash_charges): what its checks
read, then every row its accepted charges write.

On PostgreSQL the reads are one round trip (engine.storage.pipeline): the key claims, the CASH
rows locked in user order, the earlier claims of the keys not claimed now, the users' wallets,
the orders' live charges and (straight in a group-commit batch) the users' audit chain heads.
The writes — the refused charges' claims released, the charge rows, one debit per user checked
by PostgreSQL against the balance decided, the legs and the ledger — answer nothing the caller
needs, so in a batch they are handed to it and go with its next round trip (its COMMIT, when
this run is the batch's last): a batch of cash charges is two round trips. On SQLite the same
statements run one by one (no round trips to save; writers are serialized by the database lock).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from engine.domain.money import Asset
from engine.domain.results import WalletView
from engine.storage.audit_trail import ChainHeads, lock_heads_queries
from engine.storage.balances import (
    debit_as_decided,
    debit_as_decided_query,
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
from engine.storage.unit_of_work import BatchTransaction
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
    #: The users' audit chain heads, locked with the reads (``lock_heads``, PostgreSQL).
    heads: ChainHeads = field(default_factory=dict)


def read_for_cash_charges(
    connection: Connection,
    claims: Columns,
    orders: Sequence[Order],
    now_us: int,
    *,
    lock_heads: bool = False,
) -> CashChargeReads:
    """Claim the keys of ``claims`` (the columns :func:`engine.storage.idempotency.claim_keys`
    takes), lock the users' CASH rows in user order and read what the checks need; with
    ``lock_heads`` (PostgreSQL) also lock and read the users' audit chain heads, after the CASH
    rows — the order every batch takes them in."""
    pairs = list(zip(claims["user_id"], claims["idempotency_key"], strict=True))
    users = sorted(set(claims["user_id"]))
    if is_postgresql(connection):
        queries: list[Query[Any]] = [
            claim_keys_query(claims),
            lock_balances_query(Asset.CASH, users),
            read_keys_query(pairs),
            balance_wallets_query(users, now_us),
            live_orders_query(orders),
        ]
        if lock_heads:
            queries += lock_heads_queries(users)  # the last one reads the locked heads
        answers = run_pipelined(connection, queries)
        claimed, _locked, stored, wallets, live = answers[:5]
        heads: ChainHeads = answers[-1] if lock_heads else {}
        earlier = {pair: stored[pair] for pair in pairs if pair not in claimed and pair in stored}
        return CashChargeReads(claimed, earlier, wallets, live, heads)
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
    available_after: Mapping[int, int],
    legs: Sequence[tuple[str, dict[str, object]]],
    records: Sequence[TransactionRecord],
    batch: BatchTransaction | None = None,
) -> None:
    """Release the refused charges' claims and write the accepted ones: charge rows (the
    live-order index may refuse one: ``IntegrityError``), one CASH debit per user, which must
    leave the user's ``available`` at ``available_after`` (decided from the rows this
    transaction locked; anything else fails the transaction), legs, ledger.

    ``batch`` (PostgreSQL, the run straight in a group-commit batch's transaction): the
    statements are handed to it (:meth:`BatchTransaction.defer_writes`) and their errors, the
    index's included, come from its next round trip."""
    if is_postgresql(connection):
        queries: list[Query[Any]] = [release_keys_query(released)] if released else []
        if charges:
            queries += [
                insert_charges_query(charges),
                debit_as_decided_query(Asset.CASH, debits, available_after),
                insert_legs_query(legs),
                *append_transactions_queries(records),
            ]
        if not queries:
            return
        if batch is not None:
            batch.defer_writes(queries)
        else:
            run_pipelined(connection, queries)
        return
    release_keys(connection, released)
    if not charges:
        return
    insert_charges(connection, charges)
    debit_as_decided(connection, Asset.CASH, debits, available_after)
    insert_legs_of_charges(connection, legs)
    append_transactions(connection, records)
