"""The built-in expiry tasks: holds, points lots, gift cards (coupons: ``service.coupon_expiry``).

Each is a bounded batch (:func:`engine.service.batches.run_batch`): every item is resolved in its
own short transaction under a row lock, re-checking that it is still due. Each has a ``preview_*``
twin for ``--dry-run``: a bounded, read-only count of the same due rows.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.charge_status import ChargeEvent
from engine.domain.ledger import POINTS_EXPIRED, Posting, TransactionType, system_entry, user_entry
from engine.domain.money import Asset
from engine.service.batches import BatchOutcome, DueSummary, run_batch, summarize_due
from engine.service.context import EngineContext
from engine.service.holds import AUTHORIZED, is_expired, resolve_hold
from engine.storage import balances
from engine.storage.balances import lock_points_balance
from engine.storage.charges import due_hold_ids, due_holds_summary, lock_charge
from engine.storage.gift_cards import (
    EXPIRABLE_STATES,
    due_card_codes,
    due_cards_summary,
    expire_card,
    read_card,
)
from engine.storage.ledger import append_transaction
from engine.storage.lots import close_expired_lot, due_lot_ids, due_lots_summary, lock_lot, lot_owner
from engine.storage.router import Shard

__all__ = [
    "expire_gift_cards",
    "expire_holds",
    "expire_points_lots",
    "preview_gift_cards",
    "preview_holds",
    "preview_points_lots",
]


def expire_holds(context: EngineContext, shard: Shard, now_us: int, limit: int, after: str) -> BatchOutcome:
    """AUTHORIZED charges past ``hold_expires_at``: release every leg, status EXPIRED, an EXPIRE
    transaction, coupons back to ACTIVATED."""

    def resolve(connection: Connection, charge_id: str) -> bool:
        row = lock_charge(connection, charge_id)
        if row is None or row.status != AUTHORIZED or not is_expired(row, now_us):
            return False
        resolve_hold(
            context,
            connection,
            row,
            capture_amount=0,
            event=ChargeEvent.EXPIRE,
            transaction_type=TransactionType.EXPIRE,
            now_us=now_us,
            memo="hold expired",
        )
        return True

    return run_batch(
        context, shard, lambda connection: due_hold_ids(connection, now_us, after, limit), resolve, "hold"
    )


def expire_points_lots(
    context: EngineContext, shard: Shard, now_us: int, limit: int, after: str
) -> BatchOutcome:
    """Lots past ``expires_at`` not yet recorded: ``remaining`` goes to ``points_expired`` (an
    EXPIRE transaction naming the lot), the POINTS balance drops, ``expired_at`` is set. Points
    a pending authorization holds in the lot stay held (they were spent before the expiry)."""

    def resolve(connection: Connection, lot_id: str) -> bool:
        owner = lot_owner(connection, lot_id)
        if owner is None:
            return False
        # The POINTS balance row before the lot: the lock order every use case follows.
        lock_points_balance(connection, owner)
        lot = lock_lot(connection, lot_id)
        if (
            lot is None
            or lot.expired_at_us is not None
            or lot.expires_at_us is None
            or lot.expires_at_us > now_us
        ):
            return False
        if not close_expired_lot(connection, lot_id, int(lot.remaining), now_us):
            return False
        points = int(lot.remaining)
        if points == 0:
            # Spent (or clawed back) before its expiry: recorded as expired, nothing to write off.
            return True
        balances.debit_available(connection, lot.user_id, Asset.POINTS, points)
        posting = Posting()
        posting.move(
            user_entry(lot.user_id, Asset.POINTS, points, instrument=lot_id),
            system_entry(POINTS_EXPIRED, Asset.POINTS, points, instrument=lot_id),
        )
        append_transaction(
            connection,
            transaction_id=_job_transaction_id(context, lot.user_id, now_us),
            user_id=lot.user_id,
            transaction_type=TransactionType.EXPIRE,
            entries=posting.entries(),
            now_us=now_us,
            memo=f"points lot {lot_id} expired: {points} points",
        )
        return True

    return run_batch(
        context,
        shard,
        lambda connection: due_lot_ids(connection, now_us, after, limit),
        resolve,
        "points lot",
    )


def expire_gift_cards(
    context: EngineContext, shard: Shard, now_us: int, limit: int, after: str
) -> BatchOutcome:
    """Cards past ``expires_at`` become EXPIRED. Their balance stays on the card as the float's
    liability (no value moves); the EXPIRE transaction carries no entries and names the card."""

    def resolve(connection: Connection, code: str) -> bool:
        card = read_card(connection, code, lock=True)
        if card is None or card.state not in EXPIRABLE_STATES:
            return False
        if card.expires_at_us is None or card.expires_at_us > now_us:
            return False
        if not expire_card(connection, code, card.state, now_us):
            return False
        append_transaction(
            connection,
            transaction_id=_job_transaction_id(context, card.user_id, now_us),
            user_id=card.user_id,
            transaction_type=TransactionType.EXPIRE,
            entries=[],
            now_us=now_us,
            memo=(
                f"gift card {code} expired ({card.state}); "
                f"balance {card.available} held {card.held} stays on it"
            ),
        )
        return True

    return run_batch(
        context,
        shard,
        lambda connection: due_card_codes(connection, now_us, after, limit),
        resolve,
        "gift card",
    )


def preview_holds(context: EngineContext, shard: Shard, now_us: int, cap: int) -> DueSummary:
    """Dry run of :func:`expire_holds`: due holds and the paid amount (fen) they authorize."""
    return summarize_due(shard, lambda connection: due_holds_summary(connection, now_us, cap))


def preview_points_lots(context: EngineContext, shard: Shard, now_us: int, cap: int) -> DueSummary:
    """Dry run of :func:`expire_points_lots`: due lots and the points still in them. A hold the
    same run releases first may hand points back to such a lot, so the real write-off can be larger."""
    return summarize_due(shard, lambda connection: due_lots_summary(connection, now_us, cap))


def preview_gift_cards(context: EngineContext, shard: Shard, now_us: int, cap: int) -> DueSummary:
    """Dry run of :func:`expire_gift_cards`: due cards and the balance (fen) staying on them."""
    return summarize_due(shard, lambda connection: due_cards_summary(connection, now_us, cap))


def _job_transaction_id(context: EngineContext, user_id: int, now_us: int) -> str:
    return ids.new_transaction_id(context.router.virtual_shard_of_user(user_id), now_us)
