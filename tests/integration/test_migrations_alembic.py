"""Alembic migrations on PostgreSQL and SQLite: a shard of the hand-written migrations is adopted
without losing a row, a fresh shard reaches head and matches schema.py, a second migration is a
no-op, two engines migrating one shard at once both succeed, and the refusals hold."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from engine.config import Settings
from engine.domain.commands import ChargeCommand, IssueCommand, RefundCommand, TopUpSpec
from engine.domain.money import Asset
from engine.service import cash_charges, idempotent
from engine.service.audit import audit
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.refund import refund
from engine.storage.idempotency import store_response
from engine.storage.migrations import (
    LEGACY_FENCE_VERSION,
    ShardConfigurationMismatch,
    head_revision,
    migrate_all,
)
from engine.storage.router import ShardRouter
from engine.storage.schema import metadata
from engine.storage.shards import open_router
from engine.storage.unit_of_work import RequestOutcome
from tests.support.engines import REPOSITORY, ManualClock
from tests.support.legacy_schema_v1 import create_version_1_shards, snapshot

#: Users 42 and 43 live on different physical shards of two.
USERS = (42, 43)
#: Tables that revisions after 0001 created.
LATER_TABLES = ("audit_chain_heads", "audit_events")


@pytest.fixture
def router(shard_urls: list[str]) -> Iterator[ShardRouter]:
    built = open_router(Settings(shards=tuple(shard_urls)))
    try:
        yield built
    finally:
        built.dispose()


def _revisions(router: ShardRouter) -> list[list[str]]:
    found = []
    for shard in router.shards:
        with shard.engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
            found.append([row[0] for row in rows])
    return found


def _snapshots(router: ShardRouter) -> list[dict[str, list[tuple[object, ...]]]]:
    found = []
    for shard in router.shards:
        with shard.engine.connect() as connection:
            found.append(snapshot(connection))
    return found


def _store_answers_only(connection: Connection, outcomes: Sequence[RequestOutcome]) -> None:
    """What an engine of schema version 1 wrote at the end of a request: the answer, no audit row."""
    for outcome in outcomes:
        store_response(
            connection, user_id=outcome.user_id, key=outcome.idempotency_key, response=outcome.response
        )


def _money_moves(context: EngineContext, tag: str) -> None:
    for user in USERS:
        top_up = TopUpSpec(1_000, Asset.CASH, "alipay", f"{tag}{user}")
        issue(context, IssueCommand(f"{tag}-top-{user}", user, top_up))
        paid = charge(context, ChargeCommand(f"{tag}-ch-{user}", user, f"{tag}-o-{user}", "m-1", "", 300))
        refund(context, RefundCommand(f"{tag}-rf-{user}", paid.charge_id, 120))


def test_a_version_1_shard_is_adopted_without_losing_a_row(
    router: ShardRouter, shard_urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(shards=tuple(shard_urls))
    create_version_1_shards(router)
    context = EngineContext(router, settings, clock=ManualClock())
    with monkeypatch.context() as before_audit_trail:
        # Engines of schema version 1 wrote no audit trail (its tables come with revision 0002).
        before_audit_trail.setattr(idempotent, "write_outcomes", _store_answers_only)
        before_audit_trail.setattr(cash_charges, "write_outcomes", _store_answers_only)
        _money_moves(context, "before")
    before = _snapshots(router)
    assert all(rows["ledger_entries"] and rows["refunds"] for rows in before)

    migrate_all(router)

    after = _snapshots(router)
    for old, new in zip(before, after, strict=True):
        assert new.pop("alembic_version") == [(head_revision(),)]
        old_meta, new_meta = dict(old.pop("shard_meta")), dict(new.pop("shard_meta"))  # type: ignore[arg-type]
        assert old_meta.pop("schema_version") == "1"
        assert new_meta.pop("schema_version") == LEGACY_FENCE_VERSION
        assert new_meta == old_meta
        # Tables of later revisions start empty on an adopted shard.
        assert [new.pop(table) for table in LATER_TABLES] == [[] for _ in LATER_TABLES]
        assert new == old
    report = audit(context)
    assert report.ok, report
    # The adopted shards keep serving, and the audit still holds.
    _money_moves(context, "after")
    assert audit(context).ok


def test_a_fresh_shard_reaches_head_matches_schema_py_and_a_rerun_changes_nothing(
    router: ShardRouter,
) -> None:
    migrate_all(router)
    assert _revisions(router) == [[head_revision()]] * router.physical_count
    for shard in router.shards:
        with shard.engine.connect() as connection:
            # Head is what schema.py describes: a change to the tables without a revision fails here.
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    first = _snapshots(router)
    migrate_all(router)
    assert _snapshots(router) == first


def test_two_engines_in_one_process_migrating_one_fresh_shard_at_once_both_succeed(
    shard_urls: list[str],
) -> None:
    routers = [open_router(Settings(shards=tuple(shard_urls))) for _ in range(2)]
    start = threading.Barrier(len(routers))
    errors: list[BaseException] = []

    def migrate(router: ShardRouter) -> None:
        try:
            start.wait(timeout=30)
            migrate_all(router)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate, args=(router,)) for router in routers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert _revisions(routers[0]) == [[head_revision()]] * routers[0].physical_count
    finally:
        for router in routers:
            router.dispose()


#: A second engine process: migrates the shards once the test creates the file ``argv[2]``.
MIGRATING_PROCESS = """
import sys, time
from pathlib import Path
from engine.storage.shards import open_router
from engine.config import Settings
from engine.storage.migrations import migrate_all
router = open_router(Settings(shards=tuple(sys.argv[1].split(","))))
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
migrate_all(router)
"""


def test_two_engine_processes_migrating_one_fresh_shard_at_once_both_succeed(
    shard_urls: list[str], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATING_PROCESS, ",".join(shard_urls), str(go)],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == b"ready"
        go.touch()
        for process in processes:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode == 0, stderr.decode()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    router = open_router(Settings(shards=tuple(shard_urls)))
    try:
        assert _revisions(router) == [[head_revision()]] * router.physical_count
    finally:
        router.dispose()


def test_a_shard_at_a_revision_this_engine_does_not_know_is_refused(router: ShardRouter) -> None:
    migrate_all(router)
    with router.shards[0].engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(ShardConfigurationMismatch, match="9999"):
        migrate_all(router)


def test_a_version_1_shard_missing_a_table_is_refused_and_left_as_it_was(router: ShardRouter) -> None:
    create_version_1_shards(router)
    with router.shards[0].engine.begin() as connection:
        connection.execute(text("DROP TABLE points_exchange_days"))
        before = snapshot(connection)
    with pytest.raises(ShardConfigurationMismatch, match="points_exchange_days"):
        migrate_all(router)
    with router.shards[0].engine.connect() as connection:
        assert snapshot(connection) == before


def test_a_different_virtual_shard_count_is_refused(router: ShardRouter, shard_urls: list[str]) -> None:
    migrate_all(router)
    other = open_router(Settings(shards=tuple(shard_urls), virtual_shards=64))
    try:
        with pytest.raises(ShardConfigurationMismatch, match="virtual_shards"):
            migrate_all(other)
    finally:
        other.dispose()
