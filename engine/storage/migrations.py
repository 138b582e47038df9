"""Create or migrate the schema on every shard with Alembic, under a database lock, and check the
shard's identity.

Two engines starting at once are safe: PostgreSQL serializes them on a transaction-scoped
advisory lock, SQLite on its write lock (every transaction here begins ``BEGIN IMMEDIATE``,
:mod:`engine.storage.database`). The loser of the race waits, then finds the shard at head.
Everything for one shard — adoption, revisions, the identity check — runs in one transaction,
so a failure anywhere leaves the shard as it was.

Each shard records in ``shard_meta`` the virtual shard count, its own index, the physical count
and the map; an engine whose configuration disagrees refuses to start. Shards created by the
hand-written migrations before Alembic (``shard_meta.schema_version = 1``, no ``alembic_version``)
are adopted: checked, stamped at revision 0001, upgraded (docs/migrations.md).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, select, text

from engine.storage.alembic.schema_v1 import VERSION_1_TABLES
from engine.storage.router import ShardRouter
from engine.storage.schema import shard_meta

logger = logging.getLogger("coffer.migrations")

__all__ = [
    "ADOPTED_REVISION",
    "LEGACY_FENCE_VERSION",
    "MIGRATION_LOCK_ID",
    "ShardConfigurationMismatch",
    "alembic_config",
    "check_shard_identity",
    "head_revision",
    "migrate_all",
]

#: An arbitrary constant naming coffer's migration lock among PostgreSQL advisory locks.
MIGRATION_LOCK_ID = 0x0C0FFE4
#: The migration history (env.py, versions/), shipped inside the package.
ALEMBIC_DIRECTORY = Path(__file__).resolve().parent / "alembic"
#: The revision that a shard of the hand-written migrations' version 1 is stamped at.
ADOPTED_REVISION = "0001"
#: The ``shard_meta`` key where the hand-written migrations kept their version.
LEGACY_VERSION_KEY = "schema_version"
LEGACY_VERSION_ADOPTED = "1"
#: Written to ``schema_version`` once Alembic owns a shard. Engines from before Alembic refuse a
#: shard whose ``schema_version`` is above their own 1, so they can never run on a schema whose
#: revisions they do not know; Alembic's ``alembic_version`` is the version from then on.
LEGACY_FENCE_VERSION = "2"
#: Alembic keeps the running migration's context in module globals (``alembic.context``, ``op``),
#: so two migrations in one process at once would run on each other's context. Taken before
#: any database lock, so it cannot deadlock with them.
_PROCESS_LOCK = threading.Lock()


class ShardConfigurationMismatch(RuntimeError):
    """The configuration disagrees with what a shard database records about itself."""


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration built in code (no alembic.ini), for ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIRECTORY))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise CommandError(f"no revisions under {ALEMBIC_DIRECTORY}")
    return head


def _read_meta(connection: Connection) -> dict[str, str]:
    if not connection.dialect.has_table(connection, "shard_meta"):
        return {}
    rows = connection.execute(select(shard_meta.c.key, shard_meta.c.value)).all()
    return {row.key: row.value for row in rows}


def _write_meta(connection: Connection, key: str, value: str) -> None:
    updated = connection.execute(shard_meta.update().where(shard_meta.c.key == key).values(value=value))
    if updated.rowcount == 0:
        connection.execute(shard_meta.insert().values(key=key, value=value))


def _check_revisions_known(connection: Connection, config: Config, index: int) -> tuple[str, ...]:
    """The shard's Alembic revisions; refused when this engine's history lacks one (a newer
    engine migrated the shard)."""
    current = MigrationContext.configure(connection).get_current_heads()
    script = ScriptDirectory.from_config(config)
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError as error:
            raise ShardConfigurationMismatch(
                f"shard {index} is at schema revision {revision!r}, which this engine does not know "
                f"(migrated by a newer engine?)"
            ) from error
    return current


def _adopt_legacy_shard(connection: Connection, config: Config, index: int) -> None:
    """Stamp a shard of the hand-written migrations at :data:`ADOPTED_REVISION` once its version
    1 tables are verified there; nothing is created, dropped or rewritten but the version."""
    legacy_version = _read_meta(connection).get(LEGACY_VERSION_KEY)
    if legacy_version is None:
        return
    if legacy_version != LEGACY_VERSION_ADOPTED:
        raise ShardConfigurationMismatch(
            f"shard {index} records {LEGACY_VERSION_KEY}={legacy_version!r} but no Alembic revision; "
            f"only version {LEGACY_VERSION_ADOPTED} shards can be adopted"
        )
    inspector = inspect(connection)
    for table, columns in VERSION_1_TABLES.items():
        if not inspector.has_table(table):
            raise ShardConfigurationMismatch(f"shard {index} says version 1 but has no table {table!r}")
        present = {column["name"] for column in inspector.get_columns(table)}
        missing = [column for column in columns if column not in present]
        if missing:
            raise ShardConfigurationMismatch(
                f"shard {index} says version 1 but table {table!r} lacks {', '.join(missing)}"
            )
    command.stamp(config, ADOPTED_REVISION)


def check_shard_identity(connection: Connection, router: ShardRouter, index: int) -> None:
    """Record the shard's place in the configuration on first start; refuse a different one later."""
    expected = {
        "virtual_shards": str(router.virtual_shards),
        "physical_shards": str(router.physical_count),
        "physical_index": str(index),
        "shard_map": json.dumps(router.shard_map()),
    }
    recorded = _read_meta(connection)
    for key, value in expected.items():
        if key not in recorded:
            _write_meta(connection, key, value)
        elif recorded[key] != value:
            raise ShardConfigurationMismatch(
                f"shard {index} records {key}={recorded[key]!r} but the configuration gives {value!r}"
            )


def _migrate_shard(connection: Connection, router: ShardRouter, index: int) -> None:
    """Bring shard ``index`` to the head revision and check or record its identity, in the
    caller's transaction (which this locks first). The caller holds :data:`_PROCESS_LOCK`."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK_ID})
    config = alembic_config(connection)
    if not _check_revisions_known(connection, config, index):
        _adopt_legacy_shard(connection, config, index)
    before = MigrationContext.configure(connection).get_current_revision()
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        logger.info("shard %d: schema migrated from %s to %s", index, before or "nothing", after)
    # Written once, so a shard already at head is not written to at all.
    if _read_meta(connection).get(LEGACY_VERSION_KEY) != LEGACY_FENCE_VERSION:
        _write_meta(connection, LEGACY_VERSION_KEY, LEGACY_FENCE_VERSION)
    check_shard_identity(connection, router, index)


def migrate_all(router: ShardRouter) -> None:
    """Migrate every shard of ``router`` to head, one transaction each (module docstring)."""
    with _PROCESS_LOCK:
        for shard in router.shards:
            with shard.engine.begin() as connection:
                _migrate_shard(connection, router, shard.index)
