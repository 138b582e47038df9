"""Several statements in one round trip to PostgreSQL (its pipeline mode, through psycopg's
``Connection.pipeline``).

A group-commit batch runs a dozen statements, most of which do not depend on the previous one's
answer (the key claims, the row locks and the reads a decision needs; then every write the
decision makes). One at a time, each costs a round trip — the engine's writer thread waking,
taking the GIL, the database waking — and on this 2-core machine that fixed cost per statement
was most of a small batch's time. Sent together, they cost one wait. PostgreSQL still runs them
one after the other, in order, in the same transaction; an error in one fails the rest, and is
raised as SQLAlchemy raises a driver error (``DBAPIError``), so the callers' retry and
rerun rules see the same exceptions either way.

A :class:`Query` is a statement the storage modules already own (a SQLAlchemy statement built
once), its parameters, and how its rows are read; :func:`run_pipelined` compiles each statement
once per dialect and sends them all. SQLite has no round trips to save: its callers run their
statements one by one, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ClauseElement

from engine.domain.errors import require

__all__ = ["MAX_PIPELINED_STATEMENTS", "Query", "Rows", "run_pipelined", "write"]

T = TypeVar("T")

#: Statements sent in one round trip (a batch's longest sequence is about a dozen).
MAX_PIPELINED_STATEMENTS = 32

#: What a statement answered: its rows (attribute access by column name) and its row count.
Rows = tuple[list[Any], int]


@dataclass(frozen=True)
class Query(Generic[T]):
    """One statement of a pipeline: ``statement`` (built once, e.g. a module-level ``text()``),
    its ``parameters``, and ``read``, which turns what it answered into the caller's value."""

    statement: ClauseElement
    parameters: Mapping[str, Any]
    read: Callable[[Rows], T]


def _ignore(_answer: Rows) -> None:
    return None


def write(statement: ClauseElement, parameters: Mapping[str, Any]) -> Query[None]:
    """A statement whose answer is not read (its errors still are)."""
    return Query(statement, parameters, _ignore)


@functools.lru_cache(maxsize=256)
def _compiled(statement: ClauseElement, dialect: Dialect) -> Any:
    return statement.compile(dialect=dialect)


def run_pipelined(connection: Connection, queries: Sequence[Query[Any]]) -> list[Any]:
    """Send ``queries`` to PostgreSQL in one round trip, in order, inside the connection's
    transaction; each one's :attr:`Query.read` of its answer, in order."""
    require(connection.dialect.name == "postgresql", "pipelines are a PostgreSQL feature")
    require(0 < len(queries) <= MAX_PIPELINED_STATEMENTS, f"1..{MAX_PIPELINED_STATEMENTS} statements")
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    compiled = [_compiled(query.statement, connection.dialect) for query in queries]
    cursors: list[psycopg.Cursor[Any]] = []
    sql = ""
    try:
        with driver.pipeline():
            for query, form in zip(queries, compiled, strict=True):
                sql = form.string  # the last one sent: the one an error names, or one before it
                cursor = driver.cursor(row_factory=namedtuple_row)
                cursors.append(cursor)
                cursor.execute(sql, form.construct_params(dict(query.parameters)), prepare=True)
        answers = [
            (cursor.fetchall() if cursor.description is not None else [], cursor.rowcount)
            for cursor in cursors
        ]
    except psycopg.Error as error:
        # As SQLAlchemy does for a statement it runs itself: a lost connection is invalidated, so
        # the pool never hands it out again and the error says so (``connection_invalidated``).
        lost = driver.broken
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(sql, None, error, psycopg.Error, connection_invalidated=lost) from error
    finally:
        for cursor in cursors:
            cursor.close()
    return [query.read(answer) for query, answer in zip(queries, answers, strict=True)]
