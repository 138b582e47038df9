"""engine.storage.bulk.insert_rows writes exactly the rows it is given, on both dialects: on SQLite
through the driver's own executemany over row tuples (or SQLAlchemy's compiled path when a
column's type converts values), on PostgreSQL through unnest — and a conflict is SQLAlchemy's
IntegrityError on both, failing nothing but what the caller chooses to roll back."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.service.context import EngineContext
from engine.storage.bulk import insert_rows
from engine.storage.schema import accounts, ledger_entries, ledger_transactions

_ONCE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: PostgreSQL text holds no NUL; every other character may reach a memo.
_MEMO = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
_examples = iter(range(10**9))


def _transactions(prefix: str, memos: list[str]) -> dict[str, list[object]]:
    count = len(memos)
    return {
        "transaction_id": [f"{prefix}-{index}" for index in range(count)],
        "user_id": [7 + index for index in range(count)],
        "type": ["CHARGE"] * count,
        "idempotency_key": ["" if index % 2 else f"key-'{prefix}\\-{index}" for index in range(count)],
        "charge_id": [""] * count,
        "memo": memos,
        "created_at_us": [1_700_000_000_000_000 + index for index in range(count)],
    }


@_ONCE
@given(memos=st.lists(_MEMO, min_size=1, max_size=20))
def test_rows_read_back_as_written(engine_context: EngineContext, memos: list[str]) -> None:
    rows = _transactions(f"t{next(_examples)}", memos)
    engine = engine_context.router.shards[0].engine
    with engine.begin() as connection:
        insert_rows(connection, ledger_transactions, rows)
    with engine.connect() as connection:
        stored = connection.execute(
            select(*(ledger_transactions.c[name] for name in rows)).where(
                ledger_transactions.c.transaction_id.in_(rows["transaction_id"])
            )
        ).all()
    by_id = {row.transaction_id: tuple(row) for row in stored}
    assert [by_id[transaction_id] for transaction_id in rows["transaction_id"]] == list(
        zip(*rows.values(), strict=True)
    )


def test_a_conflict_is_an_integrity_error_and_ignoring_one_keeps_the_first_row(
    engine_context: EngineContext,
) -> None:
    engine = engine_context.router.shards[0].engine
    first = _transactions("dup", ["first", "other"])
    with engine.begin() as connection:
        insert_rows(connection, ledger_transactions, first)
    again = _transactions("dup", ["second", "other"])
    with pytest.raises(IntegrityError), engine.begin() as connection:
        insert_rows(connection, ledger_transactions, again)
    with engine.begin() as connection:
        insert_rows(connection, ledger_transactions, again, ignore_conflicts=True)
    with engine.connect() as connection:
        memos = connection.execute(
            select(ledger_transactions.c.memo)
            .where(ledger_transactions.c.transaction_id.in_(first["transaction_id"]))
            .order_by(ledger_transactions.c.transaction_id)
        ).scalars()
        assert list(memos) == ["first", "other"]
        # Nothing of the refused statement's rows was left in another table either.
        assert (
            connection.execute(
                select(ledger_entries.c.transaction_id).where(
                    ledger_entries.c.transaction_id.in_(first["transaction_id"])
                )
            ).all()
            == []
        )


def test_a_converted_column_still_goes_in_as_its_type(engine_context: EngineContext) -> None:
    """``accounts.frozen`` is a Boolean: SQLite stores what SQLAlchemy's type makes of it."""
    engine = engine_context.router.shards[0].engine
    rows = {
        "user_id": [900_001, 900_002],
        "virtual_shard": [1, 2],
        "frozen": [True, False],
        "points_debt": [0, 0],
        "created_at_us": [1, 1],
    }
    with engine.begin() as connection:
        insert_rows(connection, accounts, rows)
    with engine.connect() as connection:
        stored = connection.execute(
            select(accounts.c.user_id, accounts.c.frozen)
            .where(accounts.c.user_id.in_(rows["user_id"]))
            .order_by(accounts.c.user_id)
        ).all()
    assert [(row.user_id, row.frozen) for row in stored] == [(900_001, True), (900_002, False)]
