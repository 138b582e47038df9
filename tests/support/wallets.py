"""Small readers for wallet views and ledger rows, shared by tests."""

from __future__ import annotations

from sqlalchemy import func, select

from engine.domain.results import WalletView
from engine.service.context import EngineContext
from engine.storage.schema import ledger_transactions


def available(wallet: WalletView, asset: str = "CASH") -> int:
    return next(balance.available for balance in wallet.balances if balance.asset == asset)


def held(wallet: WalletView, asset: str = "CASH") -> int:
    return next(balance.held for balance in wallet.balances if balance.asset == asset)


def transaction_count(context: EngineContext, user_id: int, transaction_type: str | None = None) -> int:
    query = select(func.count()).select_from(ledger_transactions).where(
        ledger_transactions.c.user_id == user_id
    )
    if transaction_type is not None:
        query = query.where(ledger_transactions.c.type == transaction_type)
    with context.router.for_user(user_id).engine.connect() as connection:
        return int(connection.execute(query).scalar_one())
