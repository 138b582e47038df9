"""Reading a wallet: the full view (balances, live points lots, gift cards, coupons in every
state) for GetWallet, and the lean view (balances and flags only, one round trip) that every
mutation's answer carries (CONTRACT §2)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from engine.domain.money import Asset
from engine.domain.results import BalanceView, GiftCardView, PointsLotView, WalletView
from engine.storage.bulk import array_literal, is_postgresql
from engine.storage.coupons import read_coupon_views
from engine.storage.lots import LIVE_LOTS
from engine.storage.pipeline import Query
from engine.storage.schema import gift_cards, points_lots

#: A wallet view lists at most this many lots / cards; beyond that, paged queries are the tool.
MAX_LISTED_PER_KIND = 200


#: Balances, the account flags and the points of lots past expiry that the job has not processed
#: yet, of every user bound as ``:users``, in one round trip: this is read for every mutation's
#: answer, so it must stay cheap. The users arrive as one array (PostgreSQL) or one JSON list
#: (SQLite), so the statement's text is the same for any number of them.
_SUMMARY_OF_USERS = (
    "SELECT user_id, asset AS kind, available AS first, held AS second FROM balances "
    "WHERE user_id IN (SELECT user_id FROM users) "
    "UNION ALL "
    "SELECT user_id, '~account', CASE WHEN frozen THEN 1 ELSE 0 END, points_debt FROM accounts "
    "WHERE user_id IN (SELECT user_id FROM users) "
    "UNION ALL "
    "SELECT user_id, '~expired_lots', COALESCE(SUM(remaining), 0), 0 FROM points_lots "
    "WHERE user_id IN (SELECT user_id FROM users) AND remaining > 0 AND expires_at_us <= :now_us "
    "GROUP BY user_id"
)
_USERS = {
    "postgresql": "WITH users AS (SELECT unnest(CAST(:users AS BIGINT[])) AS user_id) ",
    "sqlite": "WITH users AS (SELECT value AS user_id FROM json_each(:users)) ",
}
_SUMMARY = {dialect: text(users + _SUMMARY_OF_USERS) for dialect, users in _USERS.items()}
_LIVE_LOTS = LIVE_LOTS.order_by(points_lots.c.expires_at_us, points_lots.c.granted_at_us).limit(
    MAX_LISTED_PER_KIND
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
    return read_balance_wallets(connection, [user_id], now_us)[user_id]


def read_balance_wallets(
    connection: Connection, user_ids: Sequence[int], now_us: int
) -> dict[int, WalletView]:
    """:func:`read_wallet_balances` of each of ``user_ids`` (a batch's answers), one statement
    for all. POINTS ``available`` leaves out lots past their expiry that the expiry job has not
    processed yet: such a lot stops counting at that instant, before the job writes its entry."""
    if not user_ids:
        return {}
    users = sorted(set(user_ids))
    bound = array_literal(users) if is_postgresql(connection) else json.dumps(users)
    rows = connection.execute(_SUMMARY[connection.dialect.name], {"users": bound, "now_us": now_us}).all()
    return _wallets_of(users, rows)


def balance_wallets_query(user_ids: Sequence[int], now_us: int) -> Query[dict[int, WalletView]]:
    """:func:`read_balance_wallets` as one statement of a pipeline (PostgreSQL)."""
    users = sorted(set(user_ids))
    return Query(
        _SUMMARY["postgresql"],
        {"users": array_literal(users), "now_us": now_us},
        lambda answer: _wallets_of(users, answer[0]),
    )


def _wallets_of(users: Sequence[int], rows: Sequence[Any]) -> dict[int, WalletView]:
    summary: dict[int, dict[str, tuple[int, int]]] = {user: {} for user in users}
    for row in rows:
        summary[int(row.user_id)][row.kind] = (int(row.first), int(row.second))
    return {user: _wallet_view(user, rows) for user, rows in summary.items()}


def _wallet_view(user_id: int, summary: dict[str, tuple[int, int]]) -> WalletView:
    frozen, points_debt = summary.get(_ACCOUNT, (0, 0))
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
