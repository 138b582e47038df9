"""Set-based statements for bulk issuance (IssueBatch, docs/bulk.md): one statement per table per
chunk, whatever the chunk's size.

PostgreSQL receives each column as one array and expands it with ``unnest`` — one parameter per
column instead of one per value, so a 1,000-row insert is a single prepared statement. SQLite
(embedded, in-process) receives the rows as an ``executemany``; its writers hold the database's
write lock for the whole transaction (``BEGIN IMMEDIATE``), so nothing interleaves with a chunk.

Row order is the caller's: callers sort rows by their key, so two chunks touching the same rows
lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from engine.domain.errors import require
from engine.storage.pipeline import Query, write
from engine.storage.schema import accounts

__all__ = [
    "MAX_BULK_ROWS",
    "Columns",
    "array_literal",
    "as_dicts",
    "ensure_accounts",
    "insert_rows",
    "insert_rows_query",
    "is_postgresql",
    "lock_points_debts",
    "pg_arrays",
    "row_count",
    "unnest_select",
    "user_in",
    "user_in_dialect",
    "users_parameter",
]

#: One bulk statement writes at most this many rows (a chunk's items times its rows per item).
MAX_BULK_ROWS = 10_000

#: Rows in columnar form: column name -> one value per row (every list equally long).
Columns = Mapping[str, Sequence[Any]]


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def row_count(rows: Columns) -> int:
    """How many rows ``rows`` holds; refuses ragged columns and more than :data:`MAX_BULK_ROWS`."""
    lengths = {len(values) for values in rows.values()}
    require(len(lengths) <= 1, f"bulk columns of different lengths: {sorted(lengths)}")
    count = lengths.pop() if lengths else 0
    require(count <= MAX_BULK_ROWS, f"a bulk statement of {count} rows (limit {MAX_BULK_ROWS})")
    return count


def as_dicts(rows: Columns) -> list[dict[str, Any]]:
    """Columnar rows as one dict per row (what ``executemany`` takes)."""
    names = list(rows)
    return [dict(zip(names, values, strict=True)) for values in zip(*rows.values(), strict=True)]


def _element_literal(value: Any) -> str:
    """One element of a PostgreSQL array literal: NULL, a number, a boolean or a quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    return '"' + _escaped(str(value)) + '"'


def _escaped(text: str) -> str:
    """``text`` as it goes between an array literal's double quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def array_literal(values: Sequence[Any]) -> str:
    """``values`` as one PostgreSQL array literal (``{1,2}``, ``{"a","b\\"c"}``), cast to its
    type by the statement. Built here rather than by the driver, whose per-element escaping costs
    more CPU than the database spends inserting the row."""
    # A batch's column is nearly always all ints or all plain strings: joined in one call each,
    # escaping only a column that needs it (py-spy: per-element calls were an eighth of the
    # bulk path's engine CPU).
    kinds = set(map(type, values))
    if kinds <= {int}:
        return "{" + ",".join(map(str, values)) + "}"
    if kinds == {str}:
        if "\\" in (probe := "".join(values)) or '"' in probe:
            values = list(map(_escaped, values))
        return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join(map(_element_literal, values)) + "}"


def pg_arrays(rows: Columns) -> dict[str, str]:
    """Columnar rows as one array literal per column (the parameters of :func:`unnest_select`)."""
    return {name: array_literal(values) for name, values in rows.items()}


def _sql_array_type(column: Column[Any]) -> str:
    if isinstance(column.type, BigInteger):
        return "BIGINT[]"
    if isinstance(column.type, Integer):
        return "INTEGER[]"
    if isinstance(column.type, Boolean):
        return "BOOLEAN[]"
    return "TEXT[]"


def unnest_select(table: Table, names: Sequence[str]) -> str:
    """``SELECT * FROM unnest(CAST(:c AS type[]), ...)``: the columns as one row set (PostgreSQL)."""
    arrays = ", ".join(f"CAST(:{name} AS {_sql_array_type(table.c[name])})" for name in names)
    return f"SELECT * FROM unnest({arrays}) AS rows({', '.join(names)})"


@functools.cache
def _insert_statement(dialect_name: str, table: Table, names: tuple[str, ...], ignore_conflicts: bool) -> Any:
    if dialect_name == "postgresql":
        conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        return text(f"INSERT INTO {table.name} ({', '.join(names)}) {unnest_select(table, names)}{conflict}")
    statement = sqlite.insert(table)
    return statement.on_conflict_do_nothing() if ignore_conflicts else statement


_SQLITE_DIALECT = sqlite.dialect()


@functools.cache
def _sqlite_positional_insert(table: Table, names: tuple[str, ...], ignore_conflicts: bool) -> str | None:
    """The SQLite insert of ``names`` with ``?`` placeholders, for the driver's own
    ``executemany`` over row tuples; None when a column's type converts its values on the way in
    (a Boolean, say), which only SQLAlchemy's compiled path applies.

    Why: SQLAlchemy's executemany builds and processes one parameter dict per row; the driver
    binds tuples in C. py-spy on the embedded path put ~9% of the engine's GIL time in the
    inserts of cash charges, two thirds of it in that per-row work (docs/performance.md)."""
    if any(table.c[name].type._cached_bind_processor(_SQLITE_DIALECT) is not None for name in names):
        return None
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    placeholders = ", ".join("?" * len(names))
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({placeholders}){conflict}"


def insert_rows(
    connection: Connection, table: Table, rows: Columns, *, ignore_conflicts: bool = False
) -> None:
    """Insert every row of ``rows`` into ``table`` in one statement (``ON CONFLICT DO NOTHING``
    when ``ignore_conflicts``; otherwise a conflict is an error that fails the chunk)."""
    if row_count(rows) == 0:
        return
    names = tuple(rows)
    if is_postgresql(connection):
        connection.execute(_insert_statement("postgresql", table, names, ignore_conflicts), pg_arrays(rows))
        return
    positional = _sqlite_positional_insert(table, names, ignore_conflicts)
    if positional is None:
        connection.execute(_insert_statement("sqlite", table, names, ignore_conflicts), as_dicts(rows))
    else:
        # Still through the SQLAlchemy connection: its transaction, and its exception wrapping
        # (an IntegrityError stays sqlalchemy's, as callers catch it).
        connection.exec_driver_sql(positional, list(zip(*rows.values(), strict=True)))


def insert_rows_query(table: Table, rows: Columns, *, ignore_conflicts: bool = False) -> Query[None]:
    """:func:`insert_rows` as one statement of a pipeline (PostgreSQL)."""
    require(row_count(rows) > 0, "a pipelined insert has at least one row")
    return write(_insert_statement("postgresql", table, tuple(rows), ignore_conflicts), pg_arrays(rows))


def user_in(connection: Connection, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """``column`` is one of the user ids bound as ``name``: one array parameter on PostgreSQL, an
    expanding ``IN`` on SQLite."""
    return user_in_dialect(connection.dialect.name, column, name)


def user_in_dialect(dialect_name: str, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """:func:`user_in` for a statement built once per dialect (``dialect_name``)."""
    if dialect_name == "postgresql":
        # IN (SELECT unnest(...)): the array is parsed once; ``= ANY(CAST(:p ...))`` would parse
        # it again for every row scanned (the cast of a parameter is not folded into a constant).
        users = func.unnest(cast(bindparam(name, type_=String), postgresql.ARRAY(BigInteger)))
        return column.in_(select(users).scalar_subquery())
    return column.in_(bindparam(name, expanding=True))


def users_parameter(connection: Connection, user_ids: Sequence[int]) -> Any:
    """The value to bind for :func:`user_in`: an array literal (PostgreSQL) or the list (SQLite)."""
    return array_literal(user_ids) if is_postgresql(connection) else list(user_ids)


def ensure_accounts(connection: Connection, accounts_by_user: Mapping[int, int], now_us: int) -> None:
    """Create the missing account rows of ``{user_id: virtual_shard}`` (existing ones untouched),
    in user order."""
    users = sorted(accounts_by_user)
    insert_rows(
        connection,
        accounts,
        {
            "user_id": users,
            "virtual_shard": [accounts_by_user[user] for user in users],
            "frozen": [False] * len(users),
            "frozen_reason": [""] * len(users),
            "points_debt": [0] * len(users),
            "created_at_us": [now_us] * len(users),
        },
        ignore_conflicts=True,
    )


def lock_points_debts(connection: Connection, user_ids: Sequence[int]) -> dict[int, int]:
    """The points debt of each of ``user_ids`` that owes any, those account rows locked in user
    order (the account rows must exist). Users missing from the answer owe nothing."""
    if not user_ids:
        return {}
    statement = (
        select(accounts.c.user_id, accounts.c.points_debt)
        .where(user_in(connection, accounts.c.user_id, "p_users"), accounts.c.points_debt > 0)
        .order_by(accounts.c.user_id)
        .with_for_update()
    )
    rows = connection.execute(statement, {"p_users": users_parameter(connection, sorted(user_ids))}).all()
    return {int(row.user_id): int(row.points_debt) for row in rows}
