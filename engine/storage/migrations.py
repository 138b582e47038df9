"""Create or migrate the schema on a shard, under a database lock, and check its shard metadata.

Two engines starting at once are safe: PostgreSQL serializes them on an advisory lock, SQLite on
its write lock (``BEGIN IMMEDIATE``). Each shard records the virtual shard count, its own index,
the physical count and the map; an engine whose configuration disagrees refuses to start.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Connection, select, text

from engine.storage.router import ShardRouter
from engine.storage.schema import SCHEMA_VERSION, metadata, shard_meta

#: An arbitrary constant naming coffer's migration lock among PostgreSQL advisory locks.
MIGRATION_LOCK_ID = 0x0C0FFE4


class ShardConfigurationMismatch(RuntimeError):
    """The configuration disagrees with what a shard database records about itself."""


def _create_version_1(connection: Connection) -> None:
    metadata.create_all(connection)


#: Version -> the step that brings a shard from the previous version to it.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _create_version_1}


def _read_meta(connection: Connection) -> dict[str, str]:
    if not connection.dialect.has_table(connection, "shard_meta"):
        return {}
    rows = connection.execute(select(shard_meta.c.key, shard_meta.c.value)).all()
    return {row.key: row.value for row in rows}


def _write_meta(connection: Connection, key: str, value: str) -> None:
    updated = connection.execute(shard_meta.update().where(shard_meta.c.key == key).values(value=value))
    if updated.rowcount == 0:
        connection.execute(shard_meta.insert().values(key=key, value=value))


def migrate_shard(connection: Connection, router: ShardRouter, index: int) -> None:
    """Bring shard ``index`` to :data:`SCHEMA_VERSION` and check or record its identity."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK_ID})
    meta = _read_meta(connection)
    current = int(meta.get("schema_version", "0"))
    if current > SCHEMA_VERSION:
        raise ShardConfigurationMismatch(
            f"shard {index} has schema version {current}, newer than this engine's {SCHEMA_VERSION}"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version](connection)
        _write_meta(connection, "schema_version", str(version))

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


def migrate_all(router: ShardRouter) -> None:
    for shard in router.shards:
        with shard.engine.begin() as connection:
            migrate_shard(connection, router, shard.index)
