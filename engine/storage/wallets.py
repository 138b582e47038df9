"""Reading a wallet: balances, live points lots, gift cards and coupons (every state)."""

from __future__ import annotations

from sqlalchemy import Connection, or_, select

from engine.domain.money import Asset
from engine.domain.results import BalanceView, GiftCardView, PointsLotView, WalletView
from engine.storage.balances import read_balances
from engine.storage.coupons import read_coupon_views
from engine.storage.schema import accounts, gift_cards, points_lots

#: A wallet view lists at most this many lots / cards; beyond that, paged queries are the tool.
MAX_LISTED_PER_KIND = 200


def read_wallet(connection: Connection, user_id: int, now_us: int) -> WalletView:
    account = connection.execute(
        select(accounts.c.frozen, accounts.c.points_debt).where(accounts.c.user_id == user_id)
    ).one_or_none()
    amounts = read_balances(connection, user_id)
    lots = connection.execute(
        select(
            points_lots.c.lot_id,
            points_lots.c.remaining,
            points_lots.c.expires_at_us,
            points_lots.c.granted_at_us,
        )
        .where(
            points_lots.c.user_id == user_id,
            points_lots.c.remaining > 0,
            or_(points_lots.c.expires_at_us.is_(None), points_lots.c.expires_at_us > now_us),
        )
        .order_by(points_lots.c.expires_at_us, points_lots.c.granted_at_us)
        .limit(MAX_LISTED_PER_KIND)
    ).all()
    # A lot past its expiry stops counting at that instant, before the job writes its entry.
    expired_unprocessed = (
        connection.execute(
            select(points_lots.c.remaining).where(
                points_lots.c.user_id == user_id,
                points_lots.c.remaining > 0,
                points_lots.c.expires_at_us <= now_us,
            )
        )
        .scalars()
        .all()
    )
    cards = connection.execute(
        select(gift_cards)
        .where(gift_cards.c.user_id == user_id)
        .order_by(gift_cards.c.created_at_us)
        .limit(MAX_LISTED_PER_KIND)
    ).all()
    balance_views = []
    for asset in Asset:
        available, held = amounts.get(asset, (0, 0))
        if asset is Asset.POINTS:
            available -= sum(expired_unprocessed)
        balance_views.append(BalanceView(asset.value, available, held))
    return WalletView(
        user_id=user_id,
        balances=tuple(balance_views),
        points_lots=tuple(
            PointsLotView(row.lot_id, row.remaining, row.expires_at_us, row.granted_at_us) for row in lots
        ),
        gift_cards=tuple(
            GiftCardView(
                code=row.code,
                balance=row.available,
                held=row.held,
                state=_gift_card_state(row.state, row.expires_at_us, now_us),
                expires_at_us=row.expires_at_us,
                user_id=row.user_id,
            )
            for row in cards
        ),
        coupons=read_coupon_views(connection, user_id, now_us),
        frozen=bool(account.frozen) if account else False,
        points_debt=int(account.points_debt) if account else 0,
    )


def _gift_card_state(state: str, expires_at_us: int | None, now_us: int) -> str:
    """A card past its expiry is EXPIRED at that instant, before the job records it."""
    if state in ("ACTIVE", "EMPTY", "FROZEN") and expires_at_us is not None and expires_at_us <= now_us:
        return "EXPIRED"
    return state
