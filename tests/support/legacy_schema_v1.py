"""Shards as the hand-written migrations (before Alembic) left them: the version-1 tables, a
``shard_meta.schema_version`` of 1 and the shard identity, and no ``alembic_version``.

Frozen on purpose: the tables come from the frozen version-1 schema, never from schema.py, so
these stay the shards that engines before Alembic created however the schema moves on.
"""

from __future__ import annotations

from sqlalchemy import Connection, MetaData, select, text

from engine.storage.alembic import schema_v1
from engine.storage.migrations import MIGRATION_LOCK_ID, check_shard_identity
from engine.storage.router import ShardRouter

__all__ = ["create_version_1_shards", "snapshot"]


def create_version_1_shards(router: ShardRouter) -> None:
    """What ``migrate_all`` did before Alembic, on every shard of ``router``."""
    shard_meta = schema_v1.metadata.tables["shard_meta"]
    for shard in router.shards:
        with shard.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK_ID})
            schema_v1.metadata.create_all(connection)
            connection.execute(shard_meta.insert().values(key="schema_version", value="1"))
            check_shard_identity(connection, router, shard.index)


def snapshot(connection: Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in a stable order: two snapshots are equal iff no row moved."""
    tables = MetaData()
    tables.reflect(connection)
    return {
        name: [tuple(row) for row in connection.execute(select(table).order_by(*table.columns)).all()]
        for name, table in sorted(tables.tables.items())
    }
