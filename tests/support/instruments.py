"""Test helpers for two-phase charges, gift cards and points lots (read straight from the shard)."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select

from engine.domain.commands import CoinsSpec, GiftCardSpec, IssueCommand, PointsSpec, TopUpSpec
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.service.audit import audit
from engine.service.context import EngineContext
from engine.service.issue import issue
from engine.service.queries import get_wallet
from engine.storage.schema import gift_cards, ledger_entries, ledger_transactions, points_lots

_keys = itertools.count()


def key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


def balance(context: EngineContext, user_id: int, asset: str = "CASH") -> tuple[int, int]:
    """``(available, held)`` of one asset."""
    wallet = get_wallet(context, user_id)
    found = next(item for item in wallet.balances if item.asset == asset)
    return found.available, found.held


def card(context: EngineContext, code: str) -> Any:
    shard = context.router.for_code(code)
    assert shard is not None
    with shard.engine.connect() as connection:
        return connection.execute(select(gift_cards).where(gift_cards.c.code == code)).one()


def lots(context: EngineContext, user_id: int) -> list[Any]:
    with context.router.for_user(user_id).engine.connect() as connection:
        return list(
            connection.execute(
                select(points_lots)
                .where(points_lots.c.user_id == user_id)
                .order_by(points_lots.c.granted_at_us)
            ).all()
        )


def count_transactions(context: EngineContext, user_id: int, kind: str | None = None) -> int:
    query = (
        select(func.count()).select_from(ledger_transactions).where(ledger_transactions.c.user_id == user_id)
    )
    if kind is not None:
        query = query.where(ledger_transactions.c.type == kind)
    with context.router.for_user(user_id).engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def account_total(context: EngineContext, user_id: int, account: str, asset: str) -> int:
    """Sum of one account's entries in transactions of ``user_id``."""
    with context.router.for_user(user_id).engine.connect() as connection:
        return int(
            connection.execute(
                select(func.coalesce(func.sum(ledger_entries.c.amount), 0))
                .select_from(ledger_entries.join(ledger_transactions))
                .where(
                    ledger_transactions.c.user_id == user_id,
                    ledger_entries.c.account == account,
                    ledger_entries.c.asset == asset,
                )
            ).scalar_one()
        )


def entries_of(context: EngineContext, user_id: int, transaction_id: str) -> list[Any]:
    with context.router.for_user(user_id).engine.connect() as connection:
        return list(
            connection.execute(
                select(ledger_entries).where(ledger_entries.c.transaction_id == transaction_id)
            ).all()
        )


def top_up(context: EngineContext, user_id: int, amount: int, asset: Asset = Asset.CASH) -> None:
    issue(context, IssueCommand(key("top"), user_id, TopUpSpec(amount, asset, "alipay", key("txn"))))


def grant_points(context: EngineContext, user_id: int, points: int, ttl_days: int = 0) -> str:
    issue(context, IssueCommand(key("pts"), user_id, PointsSpec(points, ttl_days, "test")))
    return str(lots(context, user_id)[-1].lot_id)


def grant_coins(context: EngineContext, user_id: int, coins: int) -> None:
    issue(context, IssueCommand(key("coins"), user_id, CoinsSpec(coins, "test")))


def new_card(context: EngineContext, user_id: int, amount: int, ttl_days: int = 0) -> str:
    result = issue(context, IssueCommand(key("gc"), user_id, GiftCardSpec(amount, "", "", "", ttl_days)))
    assert result.gift_card is not None
    return result.gift_card.code


def refused(reason: Reason, call: Any, *args: Any) -> CofferError:
    """Run ``call(*args)`` and return the CofferError it must raise with ``reason``."""
    try:
        call(*args)
    except CofferError as error:
        assert error.reason is reason, error
        return error
    raise AssertionError(f"expected {reason.label}")


def assert_audit_ok(context: EngineContext) -> None:
    report = audit(context)
    assert report.ok, [violation for shard in report.shards for violation in shard.violations]
