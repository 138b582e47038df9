"""Several statements in one round trip to PostgreSQL (libpq's pipeline mode, driven through
``psycopg.pq``).

A group-commit batch runs a dozen statements, most of which do not depend on the previous one's
answer (the key claims, the row locks and the reads a decision needs; then every write the
decision makes). One at a time, each costs a round trip — the engine's writer thread waking,
taking the GIL, the database waking — and on this 2-core machine that fixed cost per statement
was most of a small batch's time. Sent together, they cost one wait. PostgreSQL still runs them
one after the other, in order, in the same transaction; an error in one fails the rest, and is
raised as SQLAlchemy raises a driver error (``DBAPIError``), so the callers' retry and
rerun rules see the same exceptions either way.

Why libpq's pipeline calls rather than ``psycopg.Connection.pipeline()``: psycopg flushes the
socket after every statement it queues, so a pipeline of a dozen statements was a dozen
``sendto`` calls and a dozen wake-ups of the database backend — and on this machine's virtual
network a loopback send costs more kernel time than the statement's own work (perf: over half of
a small batch's CPU, engine and PostgreSQL together, was kernel time). Here every statement is
queued with libpq (``psycopg.pq``), the whole pipeline is flushed once and read back once;
psycopg's own :class:`~psycopg.adapt.Transformer` dumps the parameters and loads the rows, so
values and types are exactly what a psycopg cursor would send and return, and each statement is
prepared once per connection (named ``_coffer_N``, apart from psycopg's own ``_pg3_N``).

Every pipeline first restricts the planner, for the rest of its transaction, to index scans,
nested loops and generic plans (:data:`_KEY_DRIVEN_PLANS`). Each pipelined statement is key-driven — a batch's
keys or users, at most a few hundred, against tables that only grow — and is prepared once per
connection, so PostgreSQL plans it generically once and keeps that plan until the table is
next analyzed. Planned while the tables were young (the first batches after a start, or on a new
shard), those plans were hash joins over sequential scans of ``idempotency_keys``,
``balances`` and ``audit_chain_heads`` (auto_explain), and every batch after paid for a scan
that grew with the table: about a quarter of PostgreSQL's CPU per charge at 64 callers (docs/
performance.md). Two more stayed on custom plans, planned again at every execution. No pipelined
statement is better served by a scan or a hash.

A :class:`Query` is a statement the storage modules already own (a SQLAlchemy statement built
once), its parameters, and how its rows are read; :func:`run_pipelined` compiles each statement
once per dialect and sends them all. SQLite has no round trips to save: its callers run their
statements one by one, as before.
"""

from __future__ import annotations

import collections
import functools
import select
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import psycopg
from psycopg import abc as psycopg_abc
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from engine.domain.errors import require
from engine.storage import libpq_sends

__all__ = [
    "MAX_PIPELINED_STATEMENTS",
    "Query",
    "Rows",
    "prepare_after_uses",
    "reset_prepared",
    "run_command",
    "run_pipelined",
    "write",
]

#: A statement psycopg runs through a cursor this often is prepared on a connection that
#: :func:`prepare_after_uses` was given (psycopg's own default threshold).
PREPARE_AFTER_USES = 5

T = TypeVar("T")

#: Statements sent in one round trip (a batch's longest sequence is about a dozen).
MAX_PIPELINED_STATEMENTS = 32
#: Statements prepared on one connection; past it the connection's cache starts over (each
#: storage module builds its statements once, so a few dozen are ever seen).
MAX_PREPARED_STATEMENTS = 512

#: What a statement answered: its rows (attribute access by column name) and its row count.
Rows = tuple[list[Any], int]

#: Statements compiled with ``$1`` placeholders, the form libpq takes.
_DIALECT = postgresql_psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
#: Where a connection's prepared statements are remembered (SQLAlchemy's per-DBAPI-connection
#: ``info``: it lives exactly as long as the server session that holds them).
_PREPARED_INFO_KEY = "coffer_prepared_statements"
_PREPARED_PREFIX = "_coffer_"
#: Sent at the start of every pipeline (``is_local``: until its transaction ends); its answer is
#: not read. A plan built or rebuilt by any later statement of the transaction obeys it.
_KEY_DRIVEN_PLANS = (
    b"SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),"
    b" set_config('enable_mergejoin', 'off', true), set_config('plan_cache_mode', 'force_generic_plan', true)"
)


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


@dataclass(frozen=True)
class _Compiled:
    """A statement in libpq's form: its SQL, and its parameters' names in ``$n`` order."""

    sql: bytes
    names: tuple[str, ...]
    compiler: SQLCompiler

    def values(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The statement's parameter values in ``$n`` order (its bound defaults included)."""
        values = self.compiler.construct_params(dict(parameters)) or {}
        return [values[name] for name in self.names]


@functools.lru_cache(maxsize=256)
def _compiled(statement: ClauseElement) -> _Compiled:
    compiled = statement.compile(dialect=_DIALECT)
    require(isinstance(compiled, SQLCompiler), "a statement compiles to SQL")
    compiler = cast(SQLCompiler, compiled)
    return _Compiled(compiler.string.encode(), tuple(compiler.positiontup or ()), compiler)


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Callable[[Sequence[Any]], Any]:
    row: Any = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]
    make: Callable[[Sequence[Any]], Any] = row._make
    return make


#: A prepared statement's cache key: its SQL and its parameters' type oids.
_PrepareKey = tuple[bytes, tuple[int, ...]]


@dataclass
class _Prepared:
    """One connection's prepared statements, and the counter that names the next one (never
    reset, so a name is never reused on the server even after the cache starts over)."""

    names: dict[_PrepareKey, bytes]
    count: int = 0

    def next_name(self) -> bytes:
        self.count += 1
        return f"{_PREPARED_PREFIX}{self.count}".encode()


@dataclass(frozen=True)
class _Sent:
    """One command in flight: a query (its answer is returned), a preparation (the cache entry
    recorded once the server has accepted it), or the transaction's BEGIN; ``sql`` is what an
    error in it names."""

    sql: bytes
    prepare_key: _PrepareKey | None = None
    prepared_name: bytes = b""
    answered: bool = False


class _StatementFailed(Exception):
    """A statement of the pipeline failed (``error``); ``sql`` is that statement."""

    def __init__(self, error: psycopg.Error, sql: bytes) -> None:
        super().__init__(str(error))
        self.error = error
        self.sql = sql


def run_pipelined(connection: Connection, queries: Sequence[Query[Any]]) -> list[Any]:
    """Send ``queries`` to PostgreSQL in one round trip, in order, inside the connection's
    transaction; each one's :attr:`Query.read` of its answer, in order."""
    require(connection.dialect.name == "postgresql", "pipelines are a PostgreSQL feature")
    require(0 < len(queries) <= MAX_PIPELINED_STATEMENTS, f"1..{MAX_PIPELINED_STATEMENTS} statements")
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    prepared: _Prepared = connection.connection.info.setdefault(_PREPARED_INFO_KEY, _Prepared({}))
    try:
        with driver.lock:
            answers = _exchange(driver, prepared, queries)
    except _StatementFailed as failed:
        raise _driver_error(connection, driver, failed.error, failed.sql) from failed.error
    except psycopg.Error as error:  # the connection itself failed (sending or reading)
        raise _driver_error(connection, driver, error, b"") from error
    return [query.read(answer) for query, answer in zip(queries, answers, strict=True)]


def prepare_after_uses(connection: Connection) -> None:
    """Let psycopg prepare the statements ``connection`` runs through cursors once each has
    run :data:`PREPARE_AFTER_USES` times — for a connection that never goes back to the pool
    and runs its savepoints through :func:`run_command` (a group-commit writer's).

    Why only such a one: psycopg takes a rollback (``ROLLBACK``, ``ROLLBACK TO SAVEPOINT``, the
    pool's reset of a returned connection) as the end of every statement it prepared and sends
    ``DEALLOCATE ALL``, which drops the pipeline's statements too (one namespace per session)."""
    require(connection.dialect.name == "postgresql", "statement preparation is PostgreSQL's")
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    driver.prepare_threshold = PREPARE_AFTER_USES


def reset_prepared(connection: Connection) -> None:
    """After ``connection``'s transaction was rolled back: psycopg has forgotten its prepared
    statements (and deallocated them all if it had any); deallocate whatever is left (the
    pipeline's, if psycopg had none) and forget the pipeline's, so both caches start afresh."""
    run_command(connection, b"DEALLOCATE ALL", begin=False)
    prepared: _Prepared | None = connection.connection.info.get(_PREPARED_INFO_KEY)
    if prepared is not None:
        prepared.names.clear()  # the counter goes on: a name is never reused


def run_command(connection: Connection, command: bytes, *, begin: bool = True) -> None:
    """``command`` — a statement without parameters or rows (``SAVEPOINT``, ``ROLLBACK TO
    SAVEPOINT``, ``DEALLOCATE ALL``) — sent with libpq's simple protocol, not through a psycopg
    cursor, so psycopg's statement cache never sees it (:func:`prepare_after_uses`). With
    ``begin``, inside the connection's transaction, begun first if none is open (as psycopg
    begins one)."""
    require(connection.dialect.name == "postgresql", "libpq commands are a PostgreSQL feature")
    driver: psycopg.Connection[Any] = connection.connection.driver_connection  # type: ignore[assignment]
    try:
        with driver.lock:
            _command(driver, command, begin=begin)
    except _StatementFailed as failed:
        raise _driver_error(connection, driver, failed.error, failed.sql) from failed.error
    except psycopg.Error as error:  # the connection itself failed (sending or reading)
        raise _driver_error(connection, driver, error, b"") from error


def _command(driver: psycopg.Connection[Any], command: bytes, *, begin: bool) -> None:
    pgconn = driver.pgconn
    sql = command
    if begin and not driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:
        sql = driver._get_tx_start_command() + b"; " + command
    pgconn.send_query(sql)
    _send_queued(pgconn)
    failure: _StatementFailed | None = None
    while True:
        result = _next_result(pgconn)
        if result is None:
            break
        if result.status == pq.ExecStatus.FATAL_ERROR and failure is None:
            error = errors.error_from_result(result, encoding=driver.info.encoding)
            failure = _StatementFailed(error, command)
    if failure is not None:
        raise failure


def _send_queued(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq has queued, waiting for the socket (the GIL released) while it is full."""
    while libpq_sends.flush(pgconn):
        select.select([], [pgconn.socket], [])


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """libpq's next result, waiting for the server (the GIL released) until it is in."""
    while pgconn.is_busy():
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()
    return pgconn.get_result()


def _driver_error(
    connection: Connection, driver: psycopg.Connection[Any], error: psycopg.Error, sql: bytes
) -> StatementError:
    """``error`` as SQLAlchemy raises a driver error of a statement it ran itself: a lost
    connection is invalidated, so the pool never hands it out again, and the error says so
    (``connection_invalidated``)."""
    lost = driver.broken or driver.pgconn.status == pq.ConnStatus.BAD
    if lost:
        connection.invalidate(error)
    return DBAPIError.instance(
        sql.decode(errors="replace"), None, error, psycopg.Error, connection_invalidated=lost
    )


def _exchange(
    driver: psycopg.Connection[Any], prepared: _Prepared, queries: Sequence[Query[Any]]
) -> list[Rows]:
    pgconn = driver.pgconn
    transformer = Transformer(driver)
    if len(prepared.names) >= MAX_PREPARED_STATEMENTS:
        prepared.names.clear()  # a forgotten statement only stays on the server, unused
    sent: list[_Sent] = []
    pgconn.enter_pipeline_mode()
    try:
        if not driver.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE:
            # What psycopg sends before a transaction's first statement (its isolation level
            # included): without it the pipeline would be a transaction of its own, committed at
            # its sync, and the statements after it another.
            begin = driver._get_tx_start_command()
            pgconn.send_query_params(begin, None)
            sent.append(_Sent(begin))
        _send_prepared(pgconn, prepared, sent, _KEY_DRIVEN_PLANS, (), None, None, answered=False)
        for query in queries:
            form = _compiled(query.statement)
            formats = [PyFormat.AUTO] * len(form.names)
            params = transformer.dump_sequence(form.values(query.parameters), formats)
            types = tuple(transformer.types or ())
            formats_sent = transformer.formats
            _send_prepared(pgconn, prepared, sent, form.sql, types, params, formats_sent, answered=True)
        # Sent with the GIL released (engine.storage.libpq_sends: a send that wakes the
        # backend can deschedule this thread while the event loop waits for the GIL).
        libpq_sends.pipeline_sync(pgconn)
        _send_queued(pgconn)
        return _read_answers(pgconn, transformer, prepared, sent, driver)
    finally:
        if pgconn.status == pq.ConnStatus.OK and pgconn.pipeline_status != pq.PipelineStatus.OFF:
            pgconn.exit_pipeline_mode()


def _send_prepared(
    pgconn: pq.abc.PGconn,
    prepared: _Prepared,
    sent: list[_Sent],
    sql: bytes,
    types: tuple[int, ...],
    params: Sequence[psycopg_abc.Buffer | None] | None,
    formats: Sequence[pq.Format] | None,
    *,
    answered: bool,
) -> None:
    """Queue ``sql`` (prepared first if this connection has not prepared it yet); its rows are
    returned when ``answered``."""
    key = (sql, types)
    name = prepared.names.get(key)
    if name is None:
        name = prepared.next_name()
        pgconn.send_prepare(name, sql, param_types=types)
        sent.append(_Sent(sql, prepare_key=key, prepared_name=name))
    pgconn.send_query_prepared(name, params, param_formats=formats, result_format=pq.Format.BINARY)
    sent.append(_Sent(sql, answered=answered))


def _read_answers(
    pgconn: pq.abc.PGconn,
    transformer: psycopg_abc.Transformer,
    prepared: _Prepared,
    sent: Sequence[_Sent],
    driver: psycopg.Connection[Any],
) -> list[Rows]:
    """Every result up to the pipeline's sync: the answers of the queries, in order; the first
    error (the statements after it answer ``PIPELINE_ABORTED``) raised once all are read, so the
    connection is left with nothing pending."""
    answers: list[Rows] = []
    failure: _StatementFailed | None = None
    position = 0
    while True:
        result = _next_result(pgconn)
        if result is None:  # the end of one statement's results
            position += 1
            continue
        status = result.status
        if status == pq.ExecStatus.PIPELINE_SYNC:
            break
        require(position < len(sent), "no more results than statements sent")
        entry = sent[position]
        if status == pq.ExecStatus.FATAL_ERROR:
            if failure is None:
                error = errors.error_from_result(result, encoding=driver.info.encoding)
                failure = _StatementFailed(error, entry.sql)
        elif status == pq.ExecStatus.PIPELINE_ABORTED:
            pass
        elif entry.prepare_key is not None:
            prepared.names[entry.prepare_key] = entry.prepared_name
        elif entry.answered:
            answers.append(_answer(transformer, result))
    if failure is not None:
        raise failure
    require(position == len(sent), "one result per statement sent")
    return answers


def _answer(transformer: psycopg_abc.Transformer, result: pq.abc.PGresult) -> Rows:
    if result.status != pq.ExecStatus.TUPLES_OK:
        return [], result.command_tuples if result.command_tuples is not None else -1
    transformer.set_pgresult(result)
    names = tuple((result.fname(index) or b"").decode() for index in range(result.nfields))
    rows = transformer.load_rows(0, result.ntuples, _row_type(names))
    return rows, result.ntuples
