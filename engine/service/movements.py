"""One ledger transaction of a user, written the one way every credit, debit and grant is.

A use case opens a :class:`Movement` (it mints the transaction id on the user's virtual shard),
changes balances through it — each balance change and its posting happen together, so a
balance can never move without its ledger lines —, then :meth:`Movement.record` appends the
balanced transaction and :meth:`Movement.wallet` reads the wallet the answer carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.grants import post_credit
from engine.domain.ledger import POINTS_ISSUED, Entry, Posting, TransactionType, system_entry, user_entry
from engine.domain.money import Asset
from engine.domain.points_fifo import LotDraw, draw_points
from engine.domain.results import CouponView, IssueResult, WalletView
from engine.service.context import EngineContext
from engine.service.points_grants import grant_lot
from engine.storage.accounts import ensure_account
from engine.storage.balances import credit_available, debit_available, insufficient_funds
from engine.storage.ledger import append_transaction
from engine.storage.lots import apply_draws, read_spendable_lots
from engine.storage.wallets import read_wallet_balances

__all__ = ["Movement", "open_movement"]


@dataclass
class Movement:
    connection: Connection
    user_id: int
    virtual_shard: int
    now_us: int
    transaction_id: str
    posting: Posting = field(default_factory=Posting)

    def ensure_account(self) -> None:
        """Create the user's account row on first use (credits may arrive before any spend)."""
        ensure_account(self.connection, self.user_id, self.virtual_shard, self.now_us)

    def credit(self, asset: Asset, amount: int, source_account: str) -> None:
        """``amount`` of ``asset`` from the system account ``source_account`` to the user."""
        credit_available(self.connection, self.user_id, asset, amount)
        post_credit(
            self.posting, user_id=self.user_id, asset=asset, amount=amount, source_account=source_account
        )

    def debit(self, asset: Asset, amount: int, target_account: str) -> list[LotDraw]:
        """``amount`` of ``asset`` from the user to the system account ``target_account``; points
        leave the user's live lots FIFO (returned), like a spend."""
        draws = self.take_available(asset, amount)
        self.posting.move(
            user_entry(self.user_id, asset, amount), system_entry(target_account, asset, amount)
        )
        return draws

    def take_available(self, asset: Asset, amount: int) -> list[LotDraw]:
        """Take ``amount`` out of the user's available ``asset`` without posting it; for POINTS
        also out of the live lots, FIFO (the draws are returned for the caller to post)."""
        debit_available(self.connection, self.user_id, asset, amount)
        if asset is not Asset.POINTS:
            return []
        # The balance may still count a lot that expired before the job ran; only live lots pay.
        draws = draw_points(
            read_spendable_lots(self.connection, self.user_id, self.now_us), amount, self.now_us
        )
        if draws is None:
            raise insufficient_funds(asset, amount)
        apply_draws(self.connection, self.transaction_id, draws, hold=False)
        return draws

    def grant_points(
        self, points: int, expires_at_us: int | None, source_account: str = POINTS_ISSUED
    ) -> int:
        """A new points lot of ``points`` from ``source_account`` (paying any points debt first);
        the account row must exist. Returns the points that went to the lot."""
        return grant_lot(
            self.connection,
            user_id=self.user_id,
            lot_id=ids.new_id("lot", self.virtual_shard, self.now_us // 1000),
            points=points,
            expires_at_us=expires_at_us,
            now_us=self.now_us,
            transaction_id=self.transaction_id,
            posting=self.posting,
            source_account=source_account,
        )

    def record(
        self, transaction_type: TransactionType, *, memo: str, idempotency_key: str = ""
    ) -> list[Entry]:
        """Append the transaction with every posted entry (refused unless balanced)."""
        entries = self.posting.entries()
        append_transaction(
            self.connection,
            transaction_id=self.transaction_id,
            user_id=self.user_id,
            transaction_type=transaction_type,
            entries=entries,
            now_us=self.now_us,
            idempotency_key=idempotency_key,
            memo=memo,
        )
        return entries

    def wallet(self) -> WalletView:
        return read_wallet_balances(self.connection, self.user_id, self.now_us)

    def issued(self, coupons: Sequence[CouponView] = ()) -> IssueResult:
        """The answer of an Issue that wrote this transaction."""
        return IssueResult(transaction_id=self.transaction_id, wallet=self.wallet(), coupons=tuple(coupons))


def open_movement(context: EngineContext, connection: Connection, user_id: int, now_us: int) -> Movement:
    """A new transaction of ``user_id`` at ``now_us``, its id minted on the user's virtual shard."""
    virtual_shard = context.router.virtual_shard_of_user(user_id)
    return Movement(connection, user_id, virtual_shard, now_us, ids.new_transaction_id(virtual_shard, now_us))
