"""Balance rows. Every change is one conditional statement (CONTRACT §1, seed 000): the
``WHERE`` clause refuses an overdraft, so no read-then-write race can take a balance below zero.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, BindParameter, Connection, String, bindparam, select, text
from sqlalchemy.dialects import postgresql, sqlite

from engine.domain.errors import CofferError, InvariantViolation, Reason, require
from engine.domain.money import MAX_BALANCE_FEN, Asset, balance_limit_error
from engine.storage.bulk import array_literal, pg_arrays, unnest_select, user_in_dialect, users_parameter
from engine.storage.pipeline import Query, run_pipelined, write
from engine.storage.schema import balances
from engine.storage.unit_of_work import ConcurrentChange


def insufficient_funds(asset: Asset, needed: int) -> CofferError:
    return CofferError(
        Reason.INSUFFICIENT_FUNDS,
        f"not enough {asset.value} for {needed}",
        metadata={"asset": asset.value, "needed": str(needed)},
    )


_USER: BindParameter[int] = bindparam("p_user_id", type_=BigInteger)
_ASSET: BindParameter[str] = bindparam("p_asset", type_=String)
_AMOUNT: BindParameter[int] = bindparam("p_amount", type_=BigInteger)
_OF_ROW = (balances.c.user_id == _USER, balances.c.asset == _ASSET)

# Built once: these run on every money movement, and rebuilding them per call costs more CPU
# than the database spends executing them.
_DEBIT = (
    balances.update()
    .where(*_OF_ROW, balances.c.available >= _AMOUNT)
    .values(available=balances.c.available - _AMOUNT)
)
_HOLD = (
    balances.update()
    .where(*_OF_ROW, balances.c.available >= _AMOUNT)
    .values(available=balances.c.available - _AMOUNT, held=balances.c.held + _AMOUNT)
)
_RELEASE = (
    balances.update()
    .where(*_OF_ROW, balances.c.held >= _AMOUNT)
    .values(available=balances.c.available + _AMOUNT, held=balances.c.held - _AMOUNT)
)
_SETTLE_HELD = (
    balances.update().where(*_OF_ROW, balances.c.held >= _AMOUNT).values(held=balances.c.held - _AMOUNT)
)


@functools.cache
def _credit_statement(dialect_name: str) -> Any:
    """``INSERT … ON CONFLICT DO UPDATE … WHERE <under the ceiling> RETURNING``: one statement
    creates the row or adds to it, and returns nothing when the credit would pass 2^62."""
    module: Any = postgresql if dialect_name == "postgresql" else sqlite
    statement = module.insert(balances).values(user_id=_USER, asset=_ASSET, available=_AMOUNT, held=0)
    return statement.on_conflict_do_update(
        index_elements=[balances.c.user_id, balances.c.asset],
        set_={"available": balances.c.available + statement.excluded.available},
        where=balances.c.available <= MAX_BALANCE_FEN - statement.excluded.available,
    ).returning(balances.c.available)


def _parameters(user_id: int, asset: Asset, amount: int) -> dict[str, object]:
    return {"p_user_id": user_id, "p_asset": asset.value, "p_amount": amount}


def credit_available(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Add to ``available``, creating the row; refuses to pass the balance limit."""
    if amount == 0:
        return
    credited = connection.execute(
        _credit_statement(connection.dialect.name), _parameters(user_id, asset, amount)
    ).first()
    if credited is None:
        raise balance_limit_error(asset.value)


def debit_available(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Take from ``available``; INSUFFICIENT_FUNDS (naming the asset) when it does not hold it."""
    if amount == 0:
        return
    if connection.execute(_DEBIT, _parameters(user_id, asset, amount)).rowcount != 1:
        raise insufficient_funds(asset, amount)


def hold(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Move ``amount`` from ``available`` to ``held`` (an authorization)."""
    if amount == 0:
        return
    if connection.execute(_HOLD, _parameters(user_id, asset, amount)).rowcount != 1:
        raise insufficient_funds(asset, amount)


def release(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Move ``amount`` from ``held`` back to ``available`` (a void, an expiry, a partial capture)."""
    _change_held(connection, _RELEASE, user_id, asset, amount)


def settle_held(connection: Connection, user_id: int, asset: Asset, amount: int) -> None:
    """Take ``amount`` out of ``held`` for good (a capture)."""
    _change_held(connection, _SETTLE_HELD, user_id, asset, amount)


def _change_held(connection: Connection, statement: Any, user_id: int, asset: Asset, amount: int) -> None:
    if amount == 0:
        return
    if connection.execute(statement, _parameters(user_id, asset, amount)).rowcount != 1:
        # Held amounts are recorded per charge leg; a shortfall here is a bug, never a user error.
        raise InvariantViolation(f"held {asset.value} of user {user_id} is short of {amount}")


_BALANCES = select(balances.c.asset, balances.c.available, balances.c.held).where(balances.c.user_id == _USER)
_LOCK_POINTS = (
    select(balances.c.available)
    .where(balances.c.user_id == _USER, balances.c.asset == Asset.POINTS.value)
    .with_for_update()
)


def read_balances(connection: Connection, user_id: int) -> dict[Asset, tuple[int, int]]:
    rows = connection.execute(_BALANCES, {"p_user_id": user_id}).all()
    return {Asset(row.asset): (row.available, row.held) for row in rows}


def lock_points_balance(connection: Connection, user_id: int) -> None:
    """Take the POINTS balance row's lock (PostgreSQL; SQLite already serializes writers)."""
    connection.execute(_LOCK_POINTS, {"p_user_id": user_id}).first()


# Bulk forms (IssueBatch, docs/bulk.md). A multi-row upsert may not touch one row twice, so the
# caller sums its credits per (user, asset) first; rows come sorted by (user, asset): the lock order.
_PG_CREDIT_MANY = text(
    "INSERT INTO balances (user_id, asset, available, held) "
    "SELECT user_id, asset, available, 0 FROM "
    f"({unnest_select(balances, ('user_id', 'asset', 'available'))}) AS credits "
    "ON CONFLICT (user_id, asset) DO UPDATE SET available = balances.available + excluded.available "
    f"WHERE balances.available <= {MAX_BALANCE_FEN} - excluded.available "
    "RETURNING user_id"
)
_SQLITE_CREDIT_MANY = _credit_statement("sqlite")


def credit_available_many(connection: Connection, credits: Sequence[tuple[int, Asset, int]]) -> None:
    """Add each ``(user_id, asset, amount)`` to ``available`` (creating rows) in one statement;
    AMOUNT_LIMIT_EXCEEDED when any would pass the balance limit (the caller rolls back)."""
    credits = [credit for credit in credits if credit[2] != 0]
    if not credits:
        return
    require(
        len({(user, asset) for user, asset, _ in credits}) == len(credits),
        "one credit per (user, asset) in a bulk upsert",
    )
    if connection.dialect.name == "postgresql":
        credited = connection.execute(
            _PG_CREDIT_MANY,
            pg_arrays(
                {
                    "user_id": [user for user, _, _ in credits],
                    "asset": [asset.value for _, asset, _ in credits],
                    "available": [amount for _, _, amount in credits],
                }
            ),
        ).all()
    else:
        credited = connection.execute(
            _SQLITE_CREDIT_MANY,
            [_parameters(user, asset, amount) for user, asset, amount in credits],
        ).all()
    if len(credited) != len(credits):
        raise balance_limit_error(credits[0][1].value)


def lock_balances(connection: Connection, asset: Asset, user_ids: Sequence[int]) -> None:
    """Take the ``asset`` balance rows' locks of many users at once, in user order — the order
    every batch takes them in, so two engines' batches never wait on each other in a cycle
    (PostgreSQL; SQLite already serializes writers). A multi-row ``UPDATE`` alone would lock its
    rows in whatever order its join visits them."""
    if not user_ids or connection.dialect.name != "postgresql":
        return
    connection.execute(
        _lock_balances_statement(asset),
        {"p_users": users_parameter(connection, sorted(set(user_ids)))},
    ).all()


@functools.cache
def _lock_balances_statement(asset: Asset) -> Any:
    return (
        select(balances.c.user_id)
        .where(user_in_dialect("postgresql", balances.c.user_id, "p_users"), balances.c.asset == asset.value)
        .order_by(balances.c.user_id)
        .with_for_update()
    )


def lock_points_balances(connection: Connection, user_ids: Sequence[int]) -> None:
    """:func:`lock_points_balance` for many users at once, in user order."""
    lock_balances(connection, Asset.POINTS, user_ids)


#: The debits of :func:`debit_as_decided` (PostgreSQL), checked by PostgreSQL itself: each row
#: must end at the ``available`` the caller decided, or the statement fails — and with it the
#: transaction, so COMMIT sent in the same pipeline never applies. The failure is a cast the data
#: forces (a constant one would fail when the plan is made): SQL has no RAISE outside PL/pgSQL.
_PG_DEBIT_AS_DECIDED = text(
    "WITH debited AS ("
    "UPDATE balances AS b SET available = b.available - debits.amount "
    "FROM (SELECT * FROM unnest(CAST(:user_id AS BIGINT[]), CAST(:amount AS BIGINT[]), "
    "CAST(:available_after AS BIGINT[])) AS rows(user_id, amount, available_after)) AS debits "
    "WHERE b.user_id = debits.user_id AND b.asset = :asset AND b.available >= debits.amount "
    "RETURNING b.available = debits.available_after AS as_decided) "
    "SELECT CASE WHEN count(*) FILTER (WHERE as_decided) = CAST(:debits AS BIGINT) THEN count(*) "
    "ELSE CAST('coffer: a bulk debit did not leave the balances it was decided on: ' "
    "|| count(*) FILTER (WHERE as_decided) || ' of ' || CAST(:debits AS BIGINT) AS BIGINT) END AS debited "
    "FROM debited"
)
# SQLite has no arrays: the debits travel as one JSON document of [user_id, amount] pairs.
_SQLITE_DEBIT_MANY = text(
    "UPDATE balances SET available = balances.available - debits.amount "
    "FROM (SELECT json_extract(value, '$[0]') AS user_id, json_extract(value, '$[1]') AS amount "
    "FROM json_each(:debits)) AS debits "
    "WHERE balances.user_id = debits.user_id AND balances.asset = :asset "
    "AND balances.available >= debits.amount "
    "RETURNING balances.user_id, balances.available"
)


def debit_as_decided(
    connection: Connection,
    asset: Asset,
    debits: Sequence[tuple[int, int]],
    available_after: Mapping[int, int],
) -> None:
    """Take each ``(user_id, amount)`` (one per user, amounts > 0) from ``available`` of
    ``asset`` in one conditional statement, which must leave each user's ``available`` at
    ``available_after`` — what the caller decided from the rows it locked in this transaction.

    Anything else is not a refusal: on PostgreSQL the statement fails its transaction
    (:func:`debit_as_decided_query`); on SQLite a row that refused the debit or ended elsewhere
    changed under the decision (ConcurrentChange: the whole transaction is rerun)."""
    query = debit_as_decided_query(asset, debits, available_after)
    if connection.dialect.name == "postgresql":
        run_pipelined(connection, [query])
        return
    rows = connection.execute(
        _SQLITE_DEBIT_MANY,
        {"debits": json.dumps([list(debit) for debit in debits]), "asset": asset.value},
    ).all()
    after = {int(row.user_id): int(row.available) for row in rows}
    if after != dict(available_after):
        raise ConcurrentChange(f"{asset.value} balances changed under the debits decided from them")


def debit_as_decided_query(
    asset: Asset, debits: Sequence[tuple[int, int]], available_after: Mapping[int, int]
) -> Query[None]:
    """:func:`debit_as_decided` as one statement of a pipeline (PostgreSQL) whose answer nobody
    needs to read, so it may be sent with the transaction's COMMIT
    (engine.storage.unit_of_work.BatchTransaction)."""
    require(bool(debits), "a bulk debit has at least one row")
    require(len({user for user, _ in debits}) == len(debits), "one debit per user in a bulk debit")
    require(all(amount > 0 for _, amount in debits), "bulk debits are positive")
    require(set(available_after) == {user for user, _ in debits}, "one balance after per debited user")
    require(all(after >= 0 for after in available_after.values()), "a debit leaves no negative balance")
    arrays = pg_arrays(
        {
            "user_id": [user for user, _ in debits],
            "amount": [amount for _, amount in debits],
            "available_after": [available_after[user] for user, _ in debits],
        }
    )
    return write(_PG_DEBIT_AS_DECIDED, {**arrays, "asset": asset.value, "debits": len(debits)})


def lock_balances_query(asset: Asset, user_ids: Sequence[int]) -> Query[None]:
    """:func:`lock_balances` as one statement of a pipeline (PostgreSQL)."""
    return write(_lock_balances_statement(asset), {"p_users": array_literal(sorted(set(user_ids)))})
