"""The audit trail: ``audit_events`` (immutable, hash-chained per user) and ``audit_chain_heads``.

On PostgreSQL a trigger refuses UPDATE and DELETE of any row of ``audit_events`` (and TRUNCATE of
the table); on SQLite two triggers RAISE(ABORT) on UPDATE and DELETE. The code has no update or
delete path either (docs/security.md "Audit trail").

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.domain.errors import InvariantViolation

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_REFUSAL = "audit_events rows are immutable: no UPDATE, DELETE or TRUNCATE"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("caller", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("rpc", sa.String(length=48), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), server_default="", nullable=False),
        sa.Column("order_id", sa.String(length=128), server_default="", nullable=False),
        sa.Column("charge_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("transaction_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "seq", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_user_at", "audit_events", ["user_id", "at_us"])
    op.create_index("ix_audit_events_order", "audit_events", ["order_id", "at_us"])
    op.create_index("ix_audit_events_charge", "audit_events", ["charge_id", "at_us"])
    op.create_index("ix_audit_events_caller", "audit_events", ["caller", "at_us"])
    op.create_table(
        "audit_chain_heads",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION coffer_audit_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_REFUSAL}' USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION coffer_audit_events_immutable()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION coffer_audit_events_immutable()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
            )


def downgrade() -> None:
    # The audit trail is evidence: no revision drops it.
    raise InvariantViolation("revision 0002 holds the audit trail; downgrading it would drop it")
