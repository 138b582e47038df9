"""engine.storage.pipeline on real PostgreSQL: a pipeline belongs to the connection's
transaction (also as its first statement), answers each statement in order with the values a
psycopg cursor would return, raises a statement's error as SQLAlchemy does and leaves the
connection usable, and prepares each statement once per connection."""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine.storage import libpq_sends
from engine.storage.database import create_shard_engine
from engine.storage.pipeline import (
    PREPARE_AFTER_USES,
    Query,
    Rows,
    prepare_after_uses,
    reset_prepared,
    run_command,
    run_pipelined,
    write,
)
from tests.support.servers import PostgresServer

_INSERT = text("INSERT INTO notes (note_id, body, blob) VALUES (:note_id, :body, :blob)")
_READ = text("SELECT note_id, body, blob FROM notes WHERE note_id = ANY(:ids) ORDER BY note_id")
_COUNT = text("SELECT count(*) AS notes FROM notes")
_databases = itertools.count()


def _rows(answer: Rows) -> list[tuple[object, ...]]:
    return [tuple(row) for row in answer[0]]


def _count(answer: Rows) -> int:
    return int(answer[0][0].notes)


@pytest.fixture
def shard(postgres: PostgresServer) -> Iterator[Engine]:
    engine = create_shard_engine(
        postgres.create_database(f"pipeline{next(_databases)}"),
        pool_size=1,
        lock_timeout_ms=5000,
        statement_timeout_ms=10000,
    )
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE notes (note_id BIGINT PRIMARY KEY, body TEXT, blob BYTEA)"))
    try:
        yield engine
    finally:
        engine.dispose()


def _committed_notes(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(_COUNT).scalar_one())


def test_a_pipeline_first_in_a_transaction_is_rolled_back_with_it(shard: Engine) -> None:
    with shard.connect() as connection, connection.begin() as transaction:
        run_pipelined(connection, [write(_INSERT, {"note_id": 1, "body": "a", "blob": b"x"})])
        connection.execute(_INSERT, {"note_id": 2, "body": "b", "blob": None})
        transaction.rollback()
    assert _committed_notes(shard) == 0


def test_answers_come_back_in_order_with_their_types(shard: Engine) -> None:
    with shard.begin() as connection:
        answers = run_pipelined(
            connection,
            [
                write(_INSERT, {"note_id": 7, "body": "seven", "blob": b"\x00\xff"}),
                write(_INSERT, {"note_id": 2**40, "body": None, "blob": None}),
                Query(_READ, {"ids": [7, 2**40, 9]}, _rows),
                Query(_COUNT, {}, _count),
            ],
        )
    assert answers == [None, None, [(7, "seven", b"\x00\xff"), (2**40, None, None)], 2]
    assert _committed_notes(shard) == 2


def test_an_error_fails_the_pipeline_and_the_connection_stays_usable(shard: Engine) -> None:
    with shard.connect() as connection:
        with pytest.raises(IntegrityError, match="notes_pkey") as failure, connection.begin():
            run_pipelined(
                connection,
                [
                    write(_INSERT, {"note_id": 1, "body": "a", "blob": None}),
                    write(_INSERT, {"note_id": 1, "body": "again", "blob": None}),
                    Query(_COUNT, {}, _count),
                ],
            )
        # The error names the statement that failed (the second insert), as SQLAlchemy would.
        assert str(failure.value.statement).startswith("INSERT INTO notes")
        with connection.begin():
            assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [0]
    assert _committed_notes(shard) == 0


def test_each_statement_is_prepared_once_per_connection(shard: Engine) -> None:
    prepared = text("SELECT count(*) AS notes FROM pg_prepared_statements WHERE name LIKE '\\_coffer\\_%'")
    with shard.connect() as connection:
        for note_id in range(5):
            with connection.begin():
                run_pipelined(
                    connection,
                    [
                        write(_INSERT, {"note_id": note_id, "body": "n", "blob": None}),
                        Query(_COUNT, {}, _count),
                    ],
                )
        # The two statements, and the planner settings every pipeline starts with.
        assert connection.execute(prepared).scalar_one() == 3
    assert _committed_notes(shard) == 5


_BY_IDS = text(
    "SELECT n.note_id FROM notes AS n"
    " JOIN unnest(CAST(:ids AS BIGINT[])) AS k(note_id) ON n.note_id = k.note_id"
)
_TABLE_SCANS = text("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'notes'")
_PLANS = text(
    "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%unnest%'"
)


def test_a_pipelined_statement_probes_the_index_even_planned_on_a_tiny_table(shard: Engine) -> None:
    """Prepared once per connection, a key-driven statement keeps the plan PostgreSQL chose
    when it first ran it; on a table of a few rows that is a scan of the whole table, paid on
    every batch after as the table grows. Every pipeline plans its statements as index probes,
    generically (planned once, not on every execution), for its own transaction only."""
    with shard.connect() as connection:
        with connection.begin():
            notes = [{"note_id": note_id, "body": "n", "blob": None} for note_id in range(3)]
            connection.execute(_INSERT, notes)
        with connection.begin():
            before = connection.execute(_TABLE_SCANS).one()
            for _ in range(8):  # past the five custom plans PostgreSQL tries before a generic one
                answer = run_pipelined(connection, [Query(_BY_IDS, {"ids": "{1,2,7}"}, _rows)])
                assert sorted(answer[0]) == [(1,), (2,)]
            after = connection.execute(_TABLE_SCANS).one()
            # One probe of the primary key per id, never a scan of the table.
            assert (after.seq_scan - before.seq_scan, after.idx_scan - before.idx_scan) == (0, 8 * 3)
            assert tuple(connection.execute(_PLANS).one()) == (8, 0)
        # The restriction ended with the transaction: the session plans as configured.
        assert connection.execute(text("SHOW enable_seqscan")).scalar_one() == "on"
        assert connection.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"


def test_prepared_statements_survive_a_rolled_back_savepoint(shard: Engine) -> None:
    """A refused request's savepoint is rolled back mid-batch; the statements prepared before
    it must still be there for the batch's next pipeline."""
    with shard.connect() as connection, connection.begin():
        assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [0]
        for _ in range(6):  # past psycopg's own preparation threshold, were it on
            connection.execute(_COUNT)
        savepoint = connection.begin_nested()
        connection.execute(_INSERT, {"note_id": 1, "body": "refused", "blob": None})
        savepoint.rollback()
        assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [0]


@pytest.mark.skipif(pq.__impl__ == "python", reason="psycopg's ctypes libpq releases the GIL itself")
def test_the_sends_go_through_psycopgs_own_libpq_with_the_gil_released(postgres: PostgresServer) -> None:
    assert libpq_sends.releases_gil()
    with libpq_sends.MAPS_PATH.open() as maps:
        path = libpq_sends.libpq_path(maps)
    assert path is not None
    # The library called is the very version psycopg reports (the one it was linked with).
    assert ctypes.CDLL(path).PQlibVersion() == pq.version()


def test_a_pipeline_larger_than_the_sockets_buffer_is_sent_in_full(shard: Engine) -> None:
    # 16 MiB cannot sit in a loopback socket's buffer: flush() reports data left to send and
    # the pipeline waits for the socket until the server has read it all.
    blob = bytes(range(256)) * (16 * 1024 * 4)
    with shard.begin() as connection:
        answers = run_pipelined(
            connection,
            [
                write(_INSERT, {"note_id": 1, "body": "big", "blob": blob}),
                write(_INSERT, {"note_id": 2, "body": "big too", "blob": blob}),
                Query(text("SELECT note_id, length(blob) AS bytes FROM notes ORDER BY note_id"), {}, _rows),
            ],
        )
    assert answers[2] == [(1, len(blob)), (2, len(blob))]
    assert _committed_notes(shard) == 2


def test_sending_on_a_closed_connection_is_an_operational_error(postgres: PostgresServer) -> None:
    connection = psycopg.connect(postgres.dsn("postgres"))
    pgconn = connection.pgconn
    connection.close()
    with pytest.raises(psycopg.OperationalError):
        libpq_sends.pipeline_sync(pgconn)
    with pytest.raises(psycopg.OperationalError):
        libpq_sends.flush(pgconn)


_PREPARED_NAMES = text(
    "SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_pg3\\_%' OR name LIKE '\\_coffer\\_%'"
)


def _prepared_kinds(connection: Any) -> set[str]:
    return {str(name).split("_")[1] for name in connection.execute(_PREPARED_NAMES).scalars()}


def _warm(connection: Any) -> None:
    """A statement psycopg prepares (run past its threshold through a cursor) and one the
    pipeline prepares, both in the connection's open transaction."""
    for note_id in range(PREPARE_AFTER_USES + 1):
        connection.execute(_INSERT, {"note_id": note_id, "body": "n", "blob": None})
    run_pipelined(connection, [Query(_COUNT, {}, _count)])


def test_a_savepoint_rolled_back_as_a_command_keeps_every_prepared_statement(shard: Engine) -> None:
    with shard.connect() as connection:
        prepare_after_uses(connection)
        with connection.begin():
            _warm(connection)
            run_command(connection, b"SAVEPOINT s")
            connection.execute(_INSERT, {"note_id": 100, "body": "undone", "blob": None})
            run_command(connection, b"ROLLBACK TO SAVEPOINT s")
            assert _prepared_kinds(connection) == {"pg3", "coffer"}
            assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [PREPARE_AFTER_USES + 1]
    assert _committed_notes(shard) == PREPARE_AFTER_USES + 1


def test_through_a_cursor_the_same_rollback_deallocates_them_all(shard: Engine) -> None:
    # Why run_command exists: psycopg answers a ROLLBACK it sees with DEALLOCATE ALL.
    with shard.connect() as connection:
        prepare_after_uses(connection)
        with connection.begin():
            _warm(connection)
            connection.exec_driver_sql("SAVEPOINT s")
            connection.exec_driver_sql("ROLLBACK TO SAVEPOINT s")
            connection.execute(_COUNT).scalar_one()  # psycopg deallocates before its next statement
            assert _prepared_kinds(connection) == set()


def test_after_a_rollback_the_prepared_statements_start_afresh(shard: Engine) -> None:
    with shard.connect() as connection:
        prepare_after_uses(connection)
        transaction = connection.begin()
        _warm(connection)
        transaction.rollback()
        reset_prepared(connection)
        with connection.begin():
            assert _prepared_kinds(connection) == set()
        with connection.begin():
            # Prepared again under a new name, not the one deallocated.
            assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [0]
            assert _prepared_kinds(connection) == {"coffer"}


def test_a_failed_command_is_raised_as_sqlalchemy_raises_and_the_connection_stays_usable(
    shard: Engine,
) -> None:
    with shard.connect() as connection:
        with pytest.raises(DBAPIError, match=r"savepoint \"never_made\" does not exist"), connection.begin():
            run_command(connection, b"ROLLBACK TO SAVEPOINT never_made")
        with connection.begin():
            assert run_pipelined(connection, [Query(_COUNT, {}, _count)]) == [0]
