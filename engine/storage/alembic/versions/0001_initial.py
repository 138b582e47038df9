"""The shard schema of the hand-written migrations' version 1.

Created from a frozen copy of that schema (:mod:`engine.storage.alembic.schema_v1`), not from
the live ``engine.storage.schema.metadata``, so this revision means the same tables however
schema.py changes later. Shards that the hand-written migrations created are stamped here
instead of running it (docs/migrations.md).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from engine.domain.errors import InvariantViolation
from engine.storage.alembic import schema_v1

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # checkfirst=False: a table that exists already means a half-made shard, which must fail
    # loudly rather than be taken for a fresh one.
    schema_v1.metadata.create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    # Below 0001 there is no schema: going there would drop the ledger with every table.
    raise InvariantViolation("revision 0001 is the first; downgrading it would drop every table")
