"""The tables on every physical shard (SQLAlchemy Core; PostgreSQL and SQLite).

Times are ``*_at_us``: microseconds since the Unix epoch, UTC, as BIGINT — portable across both
databases and free of time-zone conversions. Amounts are BIGINT minor units. Balances and lots
carry CHECK constraints so that even a bug cannot store a negative balance.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

#: A change to these tables comes with a new Alembic revision (engine/storage/alembic/versions;
#: docs/migrations.md); a test compares the migrated schema with this metadata.
metadata = MetaData()

# Key/value facts about this physical shard: schema version, virtual shard count, shard map.
shard_meta = Table(
    "shard_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# One row per wallet, created by its first Issue.
accounts = Table(
    "accounts",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("virtual_shard", Integer, nullable=False),
    Column("frozen", Boolean, nullable=False, server_default=text("false")),
    Column("frozen_reason", Text, nullable=False, server_default=""),
    # Points clawed back after they were spent; settled from future grants.
    Column("points_debt", BigInteger, nullable=False, server_default=text("0")),
    Column("created_at_us", BigInteger, nullable=False),
    CheckConstraint("points_debt >= 0", name="ck_accounts_points_debt"),
)

balances = Table(
    "balances",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("asset", String(16), nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "asset", name="pk_balances"),
    CheckConstraint("available >= 0", name="ck_balances_available"),
    CheckConstraint("held >= 0", name="ck_balances_held"),
    CheckConstraint("available <= 4611686018427387904", name="ck_balances_available_max"),
    CheckConstraint("held <= 4611686018427387904", name="ck_balances_held_max"),
)

ledger_transactions = Table(
    "ledger_transactions",
    metadata,
    Column("transaction_id", String(40), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("type", String(24), nullable=False),
    Column("idempotency_key", String(128), nullable=False, server_default=""),
    Column("charge_id", String(40), nullable=False, server_default=""),
    Column("memo", Text, nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_ledger_transactions_user", "user_id", "created_at_us", "transaction_id"),
    Index("ix_ledger_transactions_charge", "charge_id"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("entry_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column(
        "transaction_id",
        String(40),
        ForeignKey("ledger_transactions.transaction_id"),
        nullable=False,
    ),
    Column("account", String(160), nullable=False),
    # NULL on system accounts, the owner on user and gift-card accounts.
    Column("user_id", BigInteger, nullable=True),
    Column("asset", String(16), nullable=False),
    Column("bucket", String(16), nullable=False, server_default=""),
    Column("instrument", String(40), nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=False),
    Index("ix_ledger_entries_transaction", "transaction_id"),
    Index("ix_ledger_entries_user", "user_id", "asset"),
)

# Idempotency keys are part of the ledger, not a cache: claimed in the effect's own transaction.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("operation", String(48), nullable=False),
    Column("request_digest", String(64), nullable=False),
    Column("response", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "idempotency_key", name="pk_idempotency_keys"),
)

# Payment callbacks retry: one credit per (user, channel, channel transaction).
channel_transactions = Table(
    "channel_transactions",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("payment_channel", String(64), nullable=False),
    Column("channel_txn_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("transaction_id", String(40), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "payment_channel", "channel_txn_id", name="pk_channel_transactions"),
)

LIVE_CHARGE_STATUSES = ("AUTHORIZED", "CAPTURED", "PARTIALLY_REFUNDED", "REFUNDED")

charges = Table(
    "charges",
    metadata,
    Column("charge_id", String(40), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    # CHARGE for an order payment; COUPON_REDEMPTION / GIFT_CARD_REDEMPTION for till redemptions.
    Column("kind", String(24), nullable=False, server_default="CHARGE"),
    Column("order_id", String(128), nullable=False),
    Column("merchant_id", String(128), nullable=False),
    Column("channel_id", String(128), nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=False),
    Column("discount", BigInteger, nullable=False, server_default=text("0")),
    Column("points_used", BigInteger, nullable=False, server_default=text("0")),
    Column("points_value", BigInteger, nullable=False, server_default=text("0")),
    Column("coins_used", BigInteger, nullable=False, server_default=text("0")),
    Column("gift_card_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("cash_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("authorized_amount", BigInteger, nullable=False),
    Column("captured_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("released_amount", BigInteger, nullable=False, server_default=text("0")),
    Column("status", String(24), nullable=False),
    Column("hold_expires_at_us", BigInteger, nullable=True),
    Column("transaction_id", String(40), nullable=False),
    Column("breakdown", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # Points earned by this charge on capture (``points_earn_bps``), the lot that holds them, and
    # how many refunds have clawed back so far (docs/two-phase-and-instruments.md).
    Column("points_earned", BigInteger, nullable=False, server_default=text("0")),
    Column("points_earned_lot_id", String(40), nullable=False, server_default=""),
    Column("points_clawed_back", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint(
        "refunded_amount <= captured_amount AND captured_amount + released_amount <= authorized_amount",
        name="ck_charges_amounts",
    ),
    Index("ix_charges_user", "user_id", "created_at_us"),
    Index("ix_charges_hold_expiry", "status", "hold_expires_at_us"),
    Index(
        "ux_charges_live_order",
        "user_id",
        "merchant_id",
        "order_id",
        unique=True,
        postgresql_where=text(
            "status IN ('AUTHORIZED','CAPTURED','PARTIALLY_REFUNDED','REFUNDED') AND kind = 'CHARGE'"
        ),
        sqlite_where=text(
            "status IN ('AUTHORIZED','CAPTURED','PARTIALLY_REFUNDED','REFUNDED') AND kind = 'CHARGE'"
        ),
    ),
)

# One row per leg of a charge: what it took, and how much of that was captured, released, refunded.
charge_legs = Table(
    "charge_legs",
    metadata,
    Column("charge_id", String(40), ForeignKey("charges.charge_id"), nullable=False),
    Column("leg_index", Integer, nullable=False),
    # COUPON, POINTS, COINS, GIFT_CARD, CASH
    Column("kind", String(16), nullable=False),
    Column("instrument", String(40), nullable=False, server_default=""),
    # Value in fen; ``units`` in the leg's own unit (points for POINTS, fen otherwise).
    Column("value", BigInteger, nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("captured_value", BigInteger, nullable=False, server_default=text("0")),
    Column("captured_units", BigInteger, nullable=False, server_default=text("0")),
    Column("released_value", BigInteger, nullable=False, server_default=text("0")),
    Column("released_units", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_value", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_units", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("charge_id", "leg_index", name="pk_charge_legs"),
)

charge_items = Table(
    "charge_items",
    metadata,
    Column("charge_id", String(40), ForeignKey("charges.charge_id"), nullable=False),
    Column("line_index", Integer, nullable=False),
    Column("sku", String(128), nullable=False),
    Column("category", String(128), nullable=False, server_default=""),
    Column("business_line", String(64), nullable=False, server_default=""),
    Column("unit_price", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    # This line's share of the coupon discount (allocated in proportion, remainder to the largest).
    Column("discount_share", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_quantity", BigInteger, nullable=False, server_default=text("0")),
    Column("refunded_value", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("charge_id", "line_index", name="pk_charge_items"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("refund_id", String(40), primary_key=True),
    Column("charge_id", String(40), ForeignKey("charges.charge_id"), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("breakdown", Text, nullable=False),
    Column("transaction_id", String(40), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_refunds_charge", "charge_id"),
)

# Coupons (docs/coupons.md). Templates and activities are global definitions written to EVERY
# physical shard by the Admin RPC, so a claim, a charge or a refund reads them on its own database.
coupon_templates = Table(
    "coupon_templates",
    metadata,
    Column("template_id", String(40), primary_key=True),
    Column("name", String(128), nullable=False),
    # FIXED_OFF, PERCENT_OFF, NO_THRESHOLD
    Column("type", String(16), nullable=False),
    Column("amount_off", BigInteger, nullable=False),
    Column("discount_bps", Integer, nullable=False),
    Column("min_spend", BigInteger, nullable=False),
    Column("max_discount", BigInteger, nullable=False),
    Column("total_stock", BigInteger, nullable=False),
    Column("per_user_limit", Integer, nullable=False),
    Column("valid_from_us", BigInteger, nullable=True),
    Column("valid_until_us", BigInteger, nullable=True),
    Column("valid_days_after_claim", Integer, nullable=False),
    # JSON: {"categories": [...], "merchants": [...], "business_lines": [...]}
    Column("scope", Text, nullable=False),
    Column("stackable", Boolean, nullable=False),
    Column("restore_on_refund", Boolean, nullable=False),
    # JSON: {"new_users_only": bool, "new_user_days": int, "min_member_level": int}
    Column("eligibility", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# A template's stock split into one allotment per virtual shard, each row on the physical database
# of its virtual shard: a claim decrements its own row (``WHERE remaining > 0``), never a global one.
coupon_stock = Table(
    "coupon_stock",
    metadata,
    Column("template_id", String(40), nullable=False),
    Column("virtual_shard", Integer, nullable=False),
    Column("allotment", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    PrimaryKeyConstraint("template_id", "virtual_shard", name="pk_coupon_stock"),
    CheckConstraint("remaining >= 0 AND remaining <= allotment", name="ck_coupon_stock"),
)

# Claims per (user, template), counted against ``per_user_limit`` by a conditional UPDATE.
coupon_claims = Table(
    "coupon_claims",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("template_id", String(40), nullable=False),
    Column("claimed", Integer, nullable=False),
    PrimaryKeyConstraint("user_id", "template_id", name="pk_coupon_claims"),
    CheckConstraint("claimed >= 0", name="ck_coupon_claims"),
)

user_coupons = Table(
    "user_coupons",
    metadata,
    Column("coupon_id", String(40), primary_key=True),
    Column("code", String(24), nullable=False, unique=True),
    Column("user_id", BigInteger, nullable=False),
    Column("template_id", String(40), nullable=False),
    # UNACTIVATED, ACTIVATED, LOCKED, USED, FROZEN, EXPIRED, REFUNDED (engine.domain.coupons.states)
    Column("state", String(16), nullable=False),
    # CLAIM (Issue(coupon), counted against the per-user limit) or ACTIVITY (a bundle).
    Column("source", String(16), nullable=False),
    Column("activity_id", String(40), nullable=False, server_default=""),
    Column("claimed_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    # The charge (or till redemption) that holds or used it; empty otherwise.
    Column("charge_id", String(40), nullable=False, server_default=""),
    Column("transaction_id", String(40), nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_user_coupons_user", "user_id", "state"),
    Index("ix_user_coupons_expiry", "state", "expires_at_us"),
    Index("ix_user_coupons_template", "template_id", "user_id"),
)

# Every state change of a user coupon, in order: the coupon's own journal.
coupon_events = Table(
    "coupon_events",
    metadata,
    Column("event_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("coupon_id", String(40), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    # The charge, transaction or operator note behind the change.
    Column("reference", String(160), nullable=False, server_default=""),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_coupon_events_coupon", "coupon_id", "event_id"),
)

activities = Table(
    "activities",
    metadata,
    Column("activity_id", String(40), primary_key=True),
    Column("name", String(128), nullable=False),
    # JSON lists: [{"template_id", "quantity", "points", "points_ttl_days"}] and the rules object.
    Column("rewards", Text, nullable=False),
    Column("rules", Text, nullable=False),
    Column("valid_from_us", BigInteger, nullable=True),
    Column("valid_until_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
)

# At most one bundle per (user, activity): the primary key is the guarantee.
activity_grants = Table(
    "activity_grants",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("activity_id", String(40), nullable=False),
    Column("transaction_id", String(40), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "activity_id", name="pk_activity_grants"),
)

# Stock moved between physical databases (docs/coupons.md, rebalancing): the OUT row is written
# with the source's decrement, the IN row with the target's increment, so a rerun of a transfer
# interrupted between the two completes it and never applies either side twice.
coupon_stock_transfers = Table(
    "coupon_stock_transfers",
    metadata,
    Column("transfer_id", String(64), nullable=False),
    # OUT on the source database, IN on the target
    Column("direction", String(4), nullable=False),
    Column("template_id", String(40), nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("transfer_id", "direction", name="pk_coupon_stock_transfers"),
)

# Points are granted in lots; ``remaining`` is spendable, ``held`` is drawn by an authorization.
points_lots = Table(
    "points_lots",
    metadata,
    Column("lot_id", String(40), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("granted", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False, server_default=text("0")),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("granted_at_us", BigInteger, nullable=False),
    Column("expired_at_us", BigInteger, nullable=True),
    Column("transaction_id", String(40), nullable=False),
    CheckConstraint("remaining >= 0 AND held >= 0", name="ck_points_lots_non_negative"),
    Index("ix_points_lots_user", "user_id", "expires_at_us"),
    Index("ix_points_lots_expiry", "expires_at_us"),
)

# Which lots a charge's points came from, so refunds return points to the same lots.
lot_draws = Table(
    "lot_draws",
    metadata,
    Column("charge_id", String(40), nullable=False),
    Column("lot_id", String(40), nullable=False),
    Column("points", BigInteger, nullable=False),
    # Given back to the lot: released by a Void / expiry / partial capture, or refunded.
    Column("returned", BigInteger, nullable=False, server_default=text("0")),
    # Still held by the authorization (settled by Capture or released); 0 for immediate charges.
    Column("held", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("charge_id", "lot_id", name="pk_lot_draws"),
    CheckConstraint("held >= 0 AND returned >= 0 AND returned + held <= points", name="ck_lot_draws"),
)

gift_cards = Table(
    "gift_cards",
    metadata,
    Column("code", String(24), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("available", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False, server_default=text("0")),
    # ACTIVE, FROZEN, EXPIRED, EMPTY
    Column("state", String(16), nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("available >= 0 AND held >= 0", name="ck_gift_cards_non_negative"),
    Index("ix_gift_cards_user", "user_id"),
    Index("ix_gift_cards_expiry", "state", "expires_at_us"),
)

# Points exchanged for cash per user and business-time-zone calendar day (the daily cap).
points_exchange_days = Table(
    "points_exchange_days",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    # ISO date (YYYY-MM-DD) in ``COFFER_TIMEZONE``.
    Column("day", String(10), nullable=False),
    Column("points", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "day", name="pk_points_exchange_days"),
    CheckConstraint("points >= 0", name="ck_points_exchange_days"),
)

# The audit trail (docs/security.md "Audit trail"): one row per acknowledged mutation, written in
# the transaction of its effect, never updated or deleted (triggers refuse both). Rows chain per
# user: ``seq`` from 1, ``prev_hash`` = the hash of the user's previous row (engine.domain.audit_events).
audit_events = Table(
    "audit_events",
    metadata,
    Column("user_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("caller", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("merchant_id", String(64), nullable=False, server_default=""),
    Column("rpc", String(48), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("request_digest", String(64), nullable=False),
    # "ok" for an acknowledged mutation; a risk rejection (later) is "rejected" with its reason.
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64), nullable=False, server_default=""),
    Column("order_id", String(128), nullable=False, server_default=""),
    Column("charge_id", String(64), nullable=False, server_default=""),
    Column("transaction_id", String(64), nullable=False, server_default=""),
    Column("amount", BigInteger, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # One row per (user, seq): two transactions can never both append the same link.
    PrimaryKeyConstraint("user_id", "seq", name="pk_audit_events"),
    Index("ix_audit_events_user_at", "user_id", "at_us"),
    Index("ix_audit_events_order", "order_id", "at_us"),
    Index("ix_audit_events_charge", "charge_id", "at_us"),
    Index("ix_audit_events_caller", "caller", "at_us"),
)

# The head of each user's audit chain: the last row's seq and hash. Locked (updated) by every
# append of that user, so two engines appending for one user take turns and cannot fork it; one
# row per user, so no row shared across users is touched per request.
audit_chain_heads = Table(
    "audit_chain_heads",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
