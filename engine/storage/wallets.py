"""Reading a wallet: the full view (balances, live points lots, gift cards, coupons in every
state) for GetWallet, and the lean view (balances and flags only, one round trip) that every
mutation's answer carries (CONTRACT §2)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Connection, bindparam, or_, select, text

from engine.domain.money import Asset
from engine.domain.results import BalanceView, GiftCardView, PointsLotView, WalletView
from engine.storage.coupons import read_coupon_views
from engine.storage.schema import gift_cards, points_lots

#: A wallet view lists at most this many lots / cards; beyond that, paged queries are the tool.
MAX_LISTED_PER_KIND = 200


#: Balances, the account flags and the points of lots past expiry that the job has not processed
#: yet, in one round trip: this is read for every mutation's answer, so it must stay cheap.
_SUMMARY = text(
    "SELECT asset AS kind, available AS first, held AS second FROM balances WHERE user_id = :user_id "
    "UNION ALL "
    "SELECT '~account', CASE WHEN frozen THEN 1 ELSE 0 END, points_debt FROM accounts "
    "WHERE user_id = :user_id "
    "UNION ALL "
    "SELECT '~expired_lots', COALESCE(SUM(remaining), 0), 0 FROM points_lots "
    "WHERE user_id = :user_id AND remaining > 0 AND expires_at_us <= :now_us"
)
_LIVE_LOTS = (
    select(
        points_lots.c.lot_id,
        points_lots.c.remaining,
        points_lots.c.expires_at_us,
        points_lots.c.granted_at_us,
    )
    .where(
        points_lots.c.user_id == bindparam("p_user_id"),
        points_lots.c.remaining > 0,
        or_(points_lots.c.expires_at_us.is_(None), points_lots.c.expires_at_us > bindparam("p_now_us")),
    )
    .order_by(points_lots.c.expires_at_us, points_lots.c.granted_at_us)
    .limit(MAX_LISTED_PER_KIND)
)
_CARDS = (
    select(gift_cards)
    .where(gift_cards.c.user_id == bindparam("p_user_id"))
    .order_by(gift_cards.c.created_at_us)
    .limit(MAX_LISTED_PER_KIND)
)
_ACCOUNT = "~account"
_EXPIRED_LOTS = "~expired_lots"


def read_wallet_balances(connection: Connection, user_id: int, now_us: int) -> WalletView:
    """Balances, ``frozen`` and the points debt as this transaction sees them, in one statement:
    what a mutation answers with. Lots, coupons and gift cards are left empty (GetWallet has them)."""
    summary = {
        row.kind: (int(row.first), int(row.second))
        for row in connection.execute(_SUMMARY, {"user_id": user_id, "now_us": now_us})
    }
    frozen, points_debt = summary.get(_ACCOUNT, (0, 0))
    # A lot past its expiry stops counting at that instant, before the job writes its entry.
    expired_unprocessed, _ = summary.get(_EXPIRED_LOTS, (0, 0))
    balance_views = []
    for asset in Asset:
        available, held = summary.get(asset.value, (0, 0))
        if asset is Asset.POINTS:
            available -= expired_unprocessed
        balance_views.append(BalanceView(asset.value, available, held))
    return WalletView(
        user_id=user_id, balances=tuple(balance_views), frozen=bool(frozen), points_debt=points_debt
    )


def read_wallet(connection: Connection, user_id: int, now_us: int) -> WalletView:
    """The full wallet (GetWallet): the balances view plus live lots, gift cards and coupons."""
    lean = read_wallet_balances(connection, user_id, now_us)
    parameters = {"p_user_id": user_id, "p_now_us": now_us}
    lots = connection.execute(_LIVE_LOTS, parameters).all()
    cards = connection.execute(_CARDS, parameters).all()
    return dataclasses.replace(
        lean,
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
    )


def _gift_card_state(state: str, expires_at_us: int | None, now_us: int) -> str:
    """A card past its expiry is EXPIRED at that instant, before the job records it."""
    if state in ("ACTIVE", "EMPTY", "FROZEN") and expires_at_us is not None and expires_at_us <= now_us:
        return "EXPIRED"
    return state
