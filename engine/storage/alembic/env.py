"""Alembic's environment: migrate the connection that :mod:`engine.storage.migrations` hands over.

That connection is already inside the transaction that holds the migration lock, so Alembic
runs every revision in it (an "external" transaction: ``begin_transaction`` adds none) and the
schema change, the version stamp and the shard identity check commit or roll back together.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from engine.domain.errors import require
from engine.storage.schema import metadata

connection = context.config.attributes.get("connection")
require(
    isinstance(connection, Connection),
    "coffer's migrations run on a connection from engine.storage.migrations (docs/migrations.md)",
)
context.configure(
    connection=connection,
    # The live tables: what autogenerate compares a database at head against.
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode lets one revision serve both databases.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
