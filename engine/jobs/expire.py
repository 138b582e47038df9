"""The built-in expiry tasks: holds, points lots, gift cards.

Each item is resolved in its own short transaction under a row lock, re-checking that it is
still due, so the job can run beside live traffic, twice at once, or twice in a row, and every
item changes at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, select

from engine.domain import ids
from engine.domain.errors import CofferError
from engine.domain.ledger import POINTS_EXPIRED, Posting, TransactionType, system_entry, user_entry
from engine.domain.money import Asset
from engine.jobs.base import BatchOutcome
from engine.service.context import EngineContext
from engine.service.holds import AUTHORIZED, is_expired, resolve_hold
from engine.storage import balances
from engine.storage.balances import lock_points_balance
from engine.storage.charges import lock_charge
from engine.storage.database import read_only
from engine.storage.gift_cards import ACTIVE, EMPTY, EXPIRED, FROZEN
from engine.storage.ledger import append_transaction
from engine.storage.router import Shard
from engine.storage.schema import charges, gift_cards, points_lots
from engine.storage.unit_of_work import UnitOfWork, run_transaction

logger = logging.getLogger("coffer.jobs")

_EXPIRABLE_CARD_STATES = (ACTIVE, EMPTY, FROZEN)


def _run_each(
    context: EngineContext,
    shard: Shard,
    keys: Sequence[str],
    resolve: Callable[[Connection, str], bool],
    what: str,
) -> BatchOutcome:
    changed = failed = 0
    for key in keys:

        def attempt(key: str = key) -> bool:
            with UnitOfWork(shard.engine) as unit:
                did = resolve(unit.connection, key)
                unit.commit()
                return did

        try:
            if run_transaction(attempt, attempts=context.settings.transaction_attempts):
                changed += 1
        except CofferError as error:
            failed += 1
            logger.warning("expire %s %s on shard %d: %s", what, key, shard.index, error)
    return BatchOutcome(seen=len(keys), changed=changed, last_key=keys[-1] if keys else "", failed=failed)


def expire_holds(context: EngineContext, shard: Shard, now_us: int, limit: int, after: str) -> BatchOutcome:
    """AUTHORIZED charges past ``hold_expires_at``: release every leg, status EXPIRED, an EXPIRE
    transaction, coupons back to ACTIVATED (``release_coupons``)."""
    with read_only(shard.engine) as connection:
        keys = list(
            connection.execute(
                select(charges.c.charge_id)
                .where(
                    charges.c.status == AUTHORIZED,
                    charges.c.hold_expires_at_us <= now_us,
                    charges.c.charge_id > after,
                )
                .order_by(charges.c.charge_id)
                .limit(limit)
            ).scalars()
        )

    def resolve(connection: Connection, charge_id: str) -> bool:
        row = lock_charge(connection, charge_id)
        if row is None or row.status != AUTHORIZED or not is_expired(row, now_us):
            return False
        resolve_hold(
            context,
            connection,
            row,
            capture_amount=0,
            status="EXPIRED",
            transaction_type=TransactionType.EXPIRE,
            now_us=now_us,
            memo="hold expired",
        )
        return True

    return _run_each(context, shard, keys, resolve, "hold")


def expire_points_lots(
    context: EngineContext, shard: Shard, now_us: int, limit: int, after: str
) -> BatchOutcome:
    """Lots past ``expires_at`` not yet recorded: ``remaining`` goes to ``points_expired`` (an
    EXPIRE transaction naming the lot), the POINTS balance drops, ``expired_at`` is set. Points
    a pending authorization holds in the lot stay held (they were spent before the expiry)."""
    with read_only(shard.engine) as connection:
        keys = list(
            connection.execute(
                select(points_lots.c.lot_id)
                .where(
                    points_lots.c.expired_at_us.is_(None),
                    points_lots.c.expires_at_us <= now_us,
                    points_lots.c.lot_id > after,
                )
                .order_by(points_lots.c.lot_id)
                .limit(limit)
            ).scalars()
        )

    def resolve(connection: Connection, lot_id: str) -> bool:
        owner = connection.execute(
            select(points_lots.c.user_id).where(points_lots.c.lot_id == lot_id)
        ).scalar_one_or_none()
        if owner is None:
            return False
        # The POINTS balance row before the lot: the lock order every use case follows.
        lock_points_balance(connection, owner)
        lot = connection.execute(
            select(points_lots).where(points_lots.c.lot_id == lot_id).with_for_update()
        ).one_or_none()
        if (
            lot is None
            or lot.expired_at_us is not None
            or lot.expires_at_us is None
            or lot.expires_at_us > now_us
        ):
            return False
        updated = connection.execute(
            points_lots.update()
            .where(
                points_lots.c.lot_id == lot_id,
                points_lots.c.expired_at_us.is_(None),
                points_lots.c.remaining == lot.remaining,
            )
            .values(remaining=0, expired_at_us=now_us)
        )
        if updated.rowcount != 1:
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

    return _run_each(context, shard, keys, resolve, "points lot")


def expire_gift_cards(
    context: EngineContext, shard: Shard, now_us: int, limit: int, after: str
) -> BatchOutcome:
    """Cards past ``expires_at`` become EXPIRED. Their balance stays on the card as the float's
    liability (no value moves); the EXPIRE transaction carries no entries and names the card."""
    with read_only(shard.engine) as connection:
        keys = list(
            connection.execute(
                select(gift_cards.c.code)
                .where(
                    gift_cards.c.state.in_(_EXPIRABLE_CARD_STATES),
                    gift_cards.c.expires_at_us <= now_us,
                    gift_cards.c.code > after,
                )
                .order_by(gift_cards.c.code)
                .limit(limit)
            ).scalars()
        )

    def resolve(connection: Connection, code: str) -> bool:
        card = connection.execute(
            select(gift_cards).where(gift_cards.c.code == code).with_for_update()
        ).one_or_none()
        if card is None or card.state not in _EXPIRABLE_CARD_STATES:
            return False
        if card.expires_at_us is None or card.expires_at_us > now_us:
            return False
        updated = connection.execute(
            gift_cards.update()
            .where(gift_cards.c.code == code, gift_cards.c.state == card.state)
            .values(state=EXPIRED, updated_at_us=now_us)
        )
        if updated.rowcount != 1:
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

    return _run_each(context, shard, keys, resolve, "gift card")


def _job_transaction_id(context: EngineContext, user_id: int, now_us: int) -> str:
    return ids.new_id("tx", context.router.virtual_shard_of_user(user_id), now_us // 1000)
