"""Granting points lots (settling a points debt first), earning points on capture, and clawing
earned points back when the order is refunded (CONTRACT §3 Refund, docs/two-phase-and-instruments.md).

* Every grant is a lot with its own expiry. If the user owes points (``accounts.points_debt``),
  the grant pays the debt first: the lot keeps only what is left over.
* Earning: a capture (an immediate charge, or ``Capture``) earns
  ``floor(base × points_earn_bps / 10000)`` points, where ``base`` is the captured value paid
  with cash, gift cards and coins (value paid with points earns nothing). The lot expires after
  ``points_earn_ttl_days``.
* Claw-back: after a refund the charge has clawed back
  ``floor(earned × refunded / captured)`` in total (all of it once fully refunded). Each
  claw-back takes first from the earned lot's unspent points, then from the user's other live
  lots, oldest expiry first; what the user no longer has becomes ``points_debt``.

Ledger: a grant is ``points_issued -> user`` (and ``points_issued -> points_debt`` for the part
that pays a debt); a claw-back is the reverse, ``user -> points_issued`` and, for the shortfall,
``points_debt -> points_issued`` — so the per-user ``points_debt`` account is minus the debt.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from engine.domain import ids
from engine.domain.errors import require
from engine.domain.grants import post_grant, split_grant
from engine.domain.ledger import POINTS_ISSUED, Posting, points_debt_entry, system_entry, user_entry
from engine.domain.money import Asset, apply_bps_floor
from engine.domain.points_fifo import spending_order
from engine.domain.time_units import expiry_after_days
from engine.legs import LegScope
from engine.service.context import EngineContext
from engine.storage.accounts import ensure_account
from engine.storage.balances import credit_available, debit_available, lock_points_balance
from engine.storage.charges import record_points_clawed_back, record_points_earned
from engine.storage.lots import insert_lot, read_spendable_lots, take_from_lot
from engine.storage.points_debt import add_points_debt, lock_points_debt, pay_points_debt

__all__ = ["claw_back_points", "earn_points", "grant_lot"]


def grant_lot(
    connection: Connection,
    *,
    user_id: int,
    lot_id: str,
    points: int,
    expires_at_us: int | None,
    now_us: int,
    transaction_id: str,
    posting: Posting,
    source_account: str = POINTS_ISSUED,
) -> int:
    """Insert a lot of ``points`` (after paying any points debt) and post the grant from
    ``source_account`` (``points_issued``; an Admin adjustment names its own account).

    The account row must exist. Returns the points that went to the lot.
    """
    # Lock order: the POINTS balance row, then the account row that carries the debt.
    lock_points_balance(connection, user_id)
    split = split_grant(points, lock_points_debt(connection, user_id))
    if split.paid_debt:
        pay_points_debt(connection, user_id, split.paid_debt)
    credit_available(connection, user_id, Asset.POINTS, split.kept)
    insert_lot(
        connection,
        lot_id=lot_id,
        user_id=user_id,
        granted=points,
        remaining=split.kept,
        expires_at_us=expires_at_us,
        now_us=now_us,
        transaction_id=transaction_id,
    )
    post_grant(posting, user_id=user_id, lot_id=lot_id, split=split, source_account=source_account)
    return split.kept


def earn_points(context: EngineContext, scope: LegScope, *, transaction_id: str, base: int) -> int:
    """Grant the points a capture of ``base`` fen earns; records them on the charge row."""
    points = apply_bps_floor(base, context.settings.points_earn_bps)
    if points <= 0:
        return 0
    virtual_shard = context.router.virtual_shard_of_user(scope.user_id)
    ensure_account(scope.connection, scope.user_id, virtual_shard, scope.now_us)
    lot_id = ids.new_id("lot", virtual_shard, scope.now_us // 1000)
    ttl_days = context.settings.points_earn_ttl_days
    grant_lot(
        scope.connection,
        user_id=scope.user_id,
        lot_id=lot_id,
        points=points,
        expires_at_us=expiry_after_days(scope.now_us, ttl_days),
        now_us=scope.now_us,
        transaction_id=transaction_id,
        posting=scope.posting,
    )
    record_points_earned(scope.connection, scope.charge_id, points, lot_id)
    return points


def claw_back_points(scope: LegScope, charge_row: Row[Any], refunded_total: int) -> int:
    """After a refund bringing the charge to ``refunded_total``: take back the earned points in
    proportion. Returns the points clawed back by this call (taken or turned into debt)."""
    earned = int(charge_row.points_earned)
    captured = int(charge_row.captured_amount)
    if earned == 0 or captured == 0:
        return 0
    target = earned if refunded_total >= captured else (earned * refunded_total) // captured
    claw = target - int(charge_row.points_clawed_back)
    if claw <= 0:
        return 0
    connection = scope.connection
    # The POINTS balance row before the lots: the lock order every use case follows.
    lock_points_balance(connection, scope.user_id)
    lots = read_spendable_lots(connection, scope.user_id, scope.now_us)
    earned_lot = [lot for lot in lots if lot.lot_id == charge_row.points_earned_lot_id]
    others = spending_order([lot for lot in lots if lot.lot_id != charge_row.points_earned_lot_id])
    remaining = claw
    taken = 0
    for lot in earned_lot + others:
        if remaining == 0:
            break
        take = min(lot.remaining, remaining)
        take_from_lot(connection, lot.lot_id, take)
        scope.posting.move(
            user_entry(scope.user_id, Asset.POINTS, take, instrument=lot.lot_id),
            system_entry(POINTS_ISSUED, Asset.POINTS, take, instrument=lot.lot_id),
        )
        remaining -= take
        taken += take
    debit_available(connection, scope.user_id, Asset.POINTS, taken)
    if remaining:
        add_points_debt(connection, scope.user_id, remaining)
        scope.posting.move(
            points_debt_entry(scope.user_id, remaining), system_entry(POINTS_ISSUED, Asset.POINTS, remaining)
        )
    require(
        record_points_clawed_back(
            connection, charge_row.charge_id, int(charge_row.points_clawed_back), target
        ),
        "the locked charge's claw-back did not move",
    )
    return claw
