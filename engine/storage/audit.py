"""The CONTRACT §8 invariants as queries over one shard. Each check returns what it found wrong.

Checks are registered in :data:`CHECKS`; features that add tables (coupons, settlement) append
their own checks there, so ``Admin.Audit``, the ``audit`` job and the tests all run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Engine, select, text

from engine.domain.audit_events import GENESIS_HASH, BrokenChain, event_hash
from engine.domain.results import Violation
from engine.storage.audit_trail import StoredAuditEvent, event_from_row
from engine.storage.database import read_only
from engine.storage.schema import audit_events

#: Each check reports at most this many rows, so an audit of a broken shard stays readable.
MAX_VIOLATIONS_PER_CHECK = 20
#: Broken audit chains named in one shard's report (the first broken link of each).
MAX_BROKEN_CHAINS_REPORTED = 100
#: Audit rows fetched per round trip while the chains are recomputed.
AUDIT_STREAM_ROWS = 2_000

Check = Callable[[Connection], list[Violation]]


def _rows(connection: Connection, sql: str) -> list[tuple[object, ...]]:
    return [tuple(row) for row in connection.execute(text(sql + f" LIMIT {MAX_VIOLATIONS_PER_CHECK}")).all()]


def transactions_balance(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT transaction_id, asset, SUM(amount) FROM ledger_entries "
        "GROUP BY transaction_id, asset HAVING SUM(amount) <> 0",
    )
    return [
        Violation("1.transaction_sums_to_zero", f"{tid} {asset} sums to {total}")
        for tid, asset, total in rows
    ]


def balances_match_entries(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT COALESCE(b.user_id, e.user_id), COALESCE(b.asset, e.asset), "
        "COALESCE(b.total, 0), COALESCE(e.total, 0) FROM "
        "(SELECT user_id, asset, SUM(available + held) AS total FROM balances GROUP BY user_id, asset) b "
        "FULL OUTER JOIN "
        "(SELECT user_id, asset, SUM(amount) AS total FROM ledger_entries WHERE account = 'user' "
        " GROUP BY user_id, asset) e ON b.user_id = e.user_id AND b.asset = e.asset "
        "WHERE COALESCE(b.total, 0) <> COALESCE(e.total, 0)",
    )
    return [
        Violation("1.balance_equals_ledger", f"user {user} {asset}: balance {balance} ledger {ledger}")
        for user, asset, balance, ledger in rows
    ]


def buckets_match_entries(connection: Connection) -> list[Violation]:
    """Finer than the contract asks: available and held each equal their own entries."""
    violations = []
    for bucket in ("available", "held"):
        rows = _rows(
            connection,
            f"SELECT b.user_id, b.asset, b.{bucket}, COALESCE(e.total, 0) FROM balances b "
            "LEFT JOIN (SELECT user_id, asset, SUM(amount) AS total FROM ledger_entries "
            f" WHERE account = 'user' AND bucket = '{bucket}' GROUP BY user_id, asset) e "
            "ON b.user_id = e.user_id AND b.asset = e.asset "
            f"WHERE b.{bucket} <> COALESCE(e.total, 0)",
        )
        violations += [
            Violation("1.bucket_equals_ledger", f"user {user} {asset} {bucket}: {value} vs ledger {ledger}")
            for user, asset, value, ledger in rows
        ]
    return violations


def lots_match_points(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT COALESCE(b.user_id, l.user_id), COALESCE(b.total, 0), COALESCE(l.total, 0) FROM "
        "(SELECT user_id, available + held AS total FROM balances WHERE asset = 'POINTS') b "
        "FULL OUTER JOIN (SELECT user_id, SUM(remaining + held) AS total FROM points_lots "
        " GROUP BY user_id) l ON b.user_id = l.user_id "
        "WHERE COALESCE(b.total, 0) <> COALESCE(l.total, 0)",
    )
    return [
        Violation("1.lots_equal_points", f"user {user}: points balance {balance} lots {lots}")
        for user, balance, lots in rows
    ]


def expired_lots_stay_empty(connection: Connection) -> list[Violation]:
    """A lot the expiry job closed holds nothing spendable again (returns to it expire at once)."""
    rows = _rows(
        connection,
        "SELECT lot_id, remaining FROM points_lots WHERE expired_at_us IS NOT NULL AND remaining > 0",
    )
    return [
        Violation("1.expired_lot_empty", f"lot {lot}: {remaining} points after expiry")
        for lot, remaining in rows
    ]


def gift_cards_match_entries(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT g.code, g.available + g.held, COALESCE(e.total, 0) FROM gift_cards g "
        "LEFT JOIN (SELECT instrument, SUM(amount) AS total FROM ledger_entries "
        " WHERE account = 'gift_card' GROUP BY instrument) e ON e.instrument = g.code "
        "WHERE g.available + g.held <> COALESCE(e.total, 0)",
    )
    return [
        Violation("1.gift_card_equals_ledger", f"card {code}: balance {balance} ledger {ledger}")
        for code, balance, ledger in rows
    ]


def nothing_negative(connection: Connection) -> list[Violation]:
    violations = []
    for table, columns in (
        ("balances", "available < 0 OR held < 0"),
        ("points_lots", "remaining < 0 OR held < 0"),
        ("gift_cards", "available < 0 OR held < 0"),
        ("accounts", "points_debt < 0"),
    ):
        count = connection.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {columns}")).scalar_one()
        if count:
            violations.append(Violation("2.nothing_negative", f"{count} rows of {table} below zero"))
    return violations


def one_effect_per_key(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT user_id, idempotency_key, COUNT(*) FROM ledger_transactions "
        "WHERE idempotency_key <> '' GROUP BY user_id, idempotency_key HAVING COUNT(*) > 1",
    )
    violations = [
        Violation("3.one_effect_per_key", f"user {user} key {key}: {count} transactions")
        for user, key, count in rows
    ]
    orphans = _rows(
        connection,
        "SELECT t.user_id, t.idempotency_key FROM ledger_transactions t "
        "LEFT JOIN idempotency_keys k ON k.user_id = t.user_id AND k.idempotency_key = t.idempotency_key "
        "WHERE t.idempotency_key <> '' AND k.user_id IS NULL",
    )
    violations += [
        Violation("3.one_effect_per_key", f"user {user} key {key}: effect without its key")
        for user, key in orphans
    ]
    return violations


def one_credit_per_channel_transaction(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT user_id, memo, COUNT(*) FROM ledger_transactions WHERE type = 'TOP_UP' "
        "GROUP BY user_id, memo HAVING COUNT(*) > 1",
    )
    return [
        Violation("3.one_top_up_per_channel_txn", f"user {user} {memo}: {count} top-ups")
        for user, memo, count in rows
    ]


def one_live_charge_per_order(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT user_id, merchant_id, order_id, COUNT(*) FROM charges WHERE kind = 'CHARGE' AND "
        "status IN ('AUTHORIZED','CAPTURED','PARTIALLY_REFUNDED','REFUNDED') "
        "GROUP BY user_id, merchant_id, order_id HAVING COUNT(*) > 1",
    )
    return [
        Violation("3.one_live_charge_per_order", f"user {user} {merchant}/{order}: {count} live charges")
        for user, merchant, order, count in rows
    ]


def charge_amounts_ordered(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT charge_id, authorized_amount, captured_amount, refunded_amount FROM charges "
        "WHERE NOT (refunded_amount <= captured_amount AND captured_amount <= authorized_amount "
        "AND refunded_amount >= 0)",
    )
    violations = [
        Violation("4.refunded_le_captured_le_authorized", f"{cid}: auth {a} captured {c} refunded {r}")
        for cid, a, c, r in rows
    ]
    mismatched = _rows(
        connection,
        "SELECT c.charge_id, c.refunded_amount, COALESCE(r.total, 0) FROM charges c "
        "LEFT JOIN (SELECT charge_id, SUM(amount) AS total FROM refunds GROUP BY charge_id) r "
        "ON r.charge_id = c.charge_id WHERE c.refunded_amount <> COALESCE(r.total, 0)",
    )
    violations += [
        Violation("4.refunds_add_up", f"{cid}: refunded {refunded} but refund rows sum to {total}")
        for cid, refunded, total in mismatched
    ]
    legs = _rows(
        connection,
        "SELECT c.charge_id, c.captured_amount, l.captured, c.refunded_amount, l.refunded FROM charges c "
        "JOIN (SELECT charge_id, SUM(captured_value) AS captured, SUM(refunded_value) AS refunded "
        " FROM charge_legs WHERE kind <> 'COUPON' GROUP BY charge_id) l ON l.charge_id = c.charge_id "
        "WHERE c.captured_amount <> l.captured OR c.refunded_amount <> l.refunded",
    )
    violations += [
        Violation("4.legs_add_up", f"{cid}: captured {c}/{lc} refunded {r}/{lr} (charge/legs)")
        for cid, c, lc, r, lr in legs
    ]
    return violations


def instrument_holds_match(connection: Connection) -> list[Violation]:
    """Two-phase charges: each gift card's buckets equal their entries, each lot's ``held`` is
    what the charges' draws still hold, and each user's points debt equals the ``points_debt``
    ledger account (a receivable, so minus the debt)."""
    violations: list[Violation] = []
    for bucket in ("available", "held"):
        rows = _rows(
            connection,
            f"SELECT g.code, g.{bucket}, COALESCE(e.total, 0) FROM gift_cards g "
            "LEFT JOIN (SELECT instrument, SUM(amount) AS total FROM ledger_entries "
            f" WHERE account = 'gift_card' AND bucket = '{bucket}' GROUP BY instrument) e "
            f"ON e.instrument = g.code WHERE g.{bucket} <> COALESCE(e.total, 0)",
        )
        violations += [
            Violation("1.gift_card_bucket_equals_ledger", f"card {code} {bucket}: {value} vs ledger {ledger}")
            for code, value, ledger in rows
        ]
    rows = _rows(
        connection,
        "SELECT l.lot_id, l.held, COALESCE(d.total, 0) FROM points_lots l "
        "LEFT JOIN (SELECT lot_id, SUM(held) AS total FROM lot_draws GROUP BY lot_id) d "
        "ON d.lot_id = l.lot_id WHERE l.held <> COALESCE(d.total, 0)",
    )
    violations += [
        Violation("1.lot_held_equals_draws", f"lot {lot}: held {held} but draws hold {draws}")
        for lot, held, draws in rows
    ]
    rows = _rows(
        connection,
        "SELECT a.user_id, a.points_debt, COALESCE(e.total, 0) FROM accounts a "
        "LEFT JOIN (SELECT user_id, SUM(amount) AS total FROM ledger_entries "
        " WHERE account = 'points_debt' GROUP BY user_id) e ON e.user_id = a.user_id "
        "WHERE a.points_debt <> -COALESCE(e.total, 0)",
    )
    violations += [
        Violation("1.points_debt_equals_ledger", f"user {user}: debt {debt} but ledger {ledger}")
        for user, debt, ledger in rows
    ]
    return violations


CHECKS: list[Check] = [
    transactions_balance,
    balances_match_entries,
    buckets_match_entries,
    lots_match_points,
    expired_lots_stay_empty,
    gift_cards_match_entries,
    nothing_negative,
    one_effect_per_key,
    one_credit_per_channel_transaction,
    one_live_charge_per_order,
    charge_amounts_ordered,
    instrument_holds_match,
]


def count_checked(connection: Connection) -> tuple[int, int]:
    transactions = connection.execute(text("SELECT COUNT(*) FROM ledger_transactions")).scalar_one()
    accounts = connection.execute(text("SELECT COUNT(*) FROM balances")).scalar_one()
    return int(transactions), int(accounts)


def coupon_stock_matches_issued(connection: Connection) -> list[Violation]:
    """No template issued beyond its stock: on this shard, the units taken from the allotments
    equal the coupons issued, and neither allotments nor coupons pass the template's stock."""
    rows = _rows(
        connection,
        "SELECT t.template_id, t.total_stock, COALESCE(s.allotted, 0), COALESCE(s.taken, 0), "
        "COALESCE(c.issued, 0) FROM coupon_templates t "
        "LEFT JOIN (SELECT template_id, SUM(allotment) AS allotted, SUM(allotment - remaining) AS taken "
        " FROM coupon_stock GROUP BY template_id) s ON s.template_id = t.template_id "
        "LEFT JOIN (SELECT template_id, COUNT(*) AS issued FROM user_coupons GROUP BY template_id) c "
        " ON c.template_id = t.template_id "
        "WHERE COALESCE(s.taken, 0) <> COALESCE(c.issued, 0) OR COALESCE(s.allotted, 0) > t.total_stock "
        "OR COALESCE(c.issued, 0) > t.total_stock",
    )
    return [
        Violation(
            "2.coupon_stock",
            f"template {tid}: stock {stock}, allotted here {allotted}, taken {taken}, coupons {issued}",
        )
        for tid, stock, allotted, taken, issued in rows
    ]


def coupon_claims_within_limit(connection: Connection) -> list[Violation]:
    """No user beyond a claim limit: each (user, template) counter is within the template's
    per-user limit and equals the user's claimed (not activity-granted) coupons."""
    rows = _rows(
        connection,
        "SELECT COALESCE(k.user_id, c.user_id), COALESCE(k.template_id, c.template_id), "
        "COALESCE(k.claimed, 0), COALESCE(c.coupons, 0), t.per_user_limit FROM coupon_claims k "
        "FULL OUTER JOIN (SELECT user_id, template_id, COUNT(*) AS coupons FROM user_coupons "
        " WHERE source = 'CLAIM' GROUP BY user_id, template_id) c "
        " ON c.user_id = k.user_id AND c.template_id = k.template_id "
        "LEFT JOIN coupon_templates t ON t.template_id = COALESCE(k.template_id, c.template_id) "
        "WHERE COALESCE(k.claimed, 0) <> COALESCE(c.coupons, 0) "
        "OR COALESCE(k.claimed, 0) > COALESCE(t.per_user_limit, 0)",
    )
    return [
        Violation(
            "2.claim_limit",
            f"user {user} template {tid}: counted {claimed}, coupons {coupons}, limit {limit}",
        )
        for user, tid, claimed, coupons, limit in rows
    ]


def one_bundle_per_activity(connection: Connection) -> list[Violation]:
    rows = _rows(
        connection,
        "SELECT c.user_id, c.activity_id, COUNT(DISTINCT c.transaction_id), MAX(g.transaction_id) "
        "FROM user_coupons c LEFT JOIN activity_grants g "
        " ON g.user_id = c.user_id AND g.activity_id = c.activity_id "
        "WHERE c.source = 'ACTIVITY' GROUP BY c.user_id, c.activity_id "
        "HAVING COUNT(DISTINCT c.transaction_id) > 1 OR MAX(g.transaction_id) IS NULL "
        "OR MAX(g.transaction_id) <> MAX(c.transaction_id)",
    )
    return [
        Violation("3.one_bundle_per_activity", f"user {user} activity {aid}: {count} bundles (grant {grant})")
        for user, aid, count, grant in rows
    ]


def locked_coupons_have_live_holds(connection: Connection) -> list[Violation]:
    """A LOCKED coupon belongs to an AUTHORIZED charge (Capture, Void and hold expiry all
    move it on)."""
    rows = _rows(
        connection,
        "SELECT u.coupon_id, u.state, COALESCE(c.status, '(none)') FROM user_coupons u "
        "LEFT JOIN charges c ON c.charge_id = u.charge_id "
        "WHERE u.state = 'LOCKED' AND (c.status IS NULL OR c.status <> 'AUTHORIZED')",
    )
    return [
        Violation("2.coupon_state", f"coupon {cid} is {state} but its charge is {status}")
        for cid, state, status in rows
    ]


CHECKS.extend(
    [
        coupon_stock_matches_issued,
        coupon_claims_within_limit,
        one_bundle_per_activity,
        locked_coupons_have_live_holds,
    ]
)


@dataclass(frozen=True)
class ChainVerification:
    events_checked: int
    broken: tuple[BrokenChain, ...]


@dataclass
class _ChainWalk:
    """One user's chain as the verifier walks it in ``seq`` order."""

    user_id: int
    expected_seq: int = 1
    previous_hash: str = GENESIS_HASH
    broken: bool = False


def _first_problem(walk: _ChainWalk, stored: StoredAuditEvent) -> str | None:
    event = stored.event
    if event.seq != walk.expected_seq:
        return f"seq {event.seq} where seq {walk.expected_seq} was due (a row is missing)"
    if event.prev_hash != walk.previous_hash:
        return f"seq {event.seq} does not link to the row before it"
    if event_hash(event) != stored.hash:
        return f"seq {event.seq}: its hash does not match its content (the row was edited)"
    return None


def _broken_heads(connection: Connection) -> list[BrokenChain]:
    """A head that names no row or another hash (the chain's last rows removed), or rows past the
    head (appended around the engine)."""
    rows = _rows(
        connection,
        "SELECT h.user_id, h.seq FROM audit_chain_heads h LEFT JOIN audit_events e "
        "ON e.user_id = h.user_id AND e.seq = h.seq "
        "WHERE (h.seq > 0 AND (e.seq IS NULL OR e.hash <> h.hash)) "
        "OR EXISTS (SELECT 1 FROM audit_events x WHERE x.user_id = h.user_id AND x.seq > h.seq) "
        "UNION SELECT DISTINCT e.user_id, 0 FROM audit_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_chain_heads h WHERE h.user_id = e.user_id) "
        "ORDER BY 1",
    )
    return [
        BrokenChain(cast(int, user), cast(int, seq), "the chain head does not match the chain's last row")
        for user, seq in rows
    ]


def verify_audit_chains(connection: Connection) -> ChainVerification:
    """Recompute every user's chain in ``seq`` order (streamed, so memory stays bounded) and
    report the first broken link per user, at most :data:`MAX_BROKEN_CHAINS_REPORTED` users."""
    broken: dict[int, BrokenChain] = {}
    checked = 0
    walk: _ChainWalk | None = None
    statement = select(audit_events).order_by(audit_events.c.user_id, audit_events.c.seq)
    for row in connection.execution_options(yield_per=AUDIT_STREAM_ROWS).execute(statement):
        stored = event_from_row(row)
        checked += 1
        if walk is None or walk.user_id != stored.event.user_id:
            walk = _ChainWalk(stored.event.user_id)
        if walk.broken:
            continue
        problem = _first_problem(walk, stored)
        if problem is not None:
            walk.broken = True
            if len(broken) < MAX_BROKEN_CHAINS_REPORTED:
                broken[walk.user_id] = BrokenChain(walk.user_id, stored.event.seq, problem)
            continue
        walk.expected_seq += 1
        walk.previous_hash = stored.hash
    for head in _broken_heads(connection):
        if head.user_id not in broken and len(broken) < MAX_BROKEN_CHAINS_REPORTED:
            broken[head.user_id] = head
    return ChainVerification(checked, tuple(broken[user] for user in sorted(broken)))


def chain_violations(verification: ChainVerification) -> list[Violation]:
    return [
        Violation("audit_trail.chain_intact", f"user {chain.user_id}: {chain.problem}")
        for chain in verification.broken
    ]


@dataclass(frozen=True)
class ShardCheck:
    violations: list[Violation]
    transactions_checked: int
    accounts_checked: int
    chains: ChainVerification


def check_shard(engine: Engine) -> ShardCheck:
    """Every check in :data:`CHECKS` and the audit trail's chains on one shard, in one snapshot
    (REPEATABLE READ on PostgreSQL, SQLite's transaction otherwise)."""
    with read_only(engine) as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            violations = [violation for check in CHECKS for violation in check(connection)]
            transactions, accounts = count_checked(connection)
            chains = verify_audit_chains(connection)
    return ShardCheck(violations + chain_violations(chains), transactions, accounts, chains)
