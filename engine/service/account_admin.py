"""Admin operations on a wallet: freeze / unfreeze, and signed manual adjustments.

A frozen wallet refuses to spend (Charge: ACCOUNT_FROZEN) but still receives credits: a payment
callback for money already paid must never be lost because risk control froze the account.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from engine.domain import ids
from engine.domain.commands import AdjustCommand, FreezeAccountCommand
from engine.domain.errors import invalid_argument
from engine.domain.ledger import Posting, TransactionType, adjustment, system_entry, user_entry
from engine.domain.money import Asset, require_within_limit
from engine.domain.points_fifo import draw_points
from engine.domain.results import AccountStateResult, AdjustResult, EntryView, TransactionView
from engine.domain.validation import require_idempotency_key, require_reference, require_text, require_user_id
from engine.service.context import EngineContext
from engine.service.idempotent import execute_for_user
from engine.service.points_grants import grant_lot
from engine.storage import balances
from engine.storage.accounts import ensure_account, set_frozen
from engine.storage.balances import insufficient_funds
from engine.storage.ledger import append_transaction
from engine.storage.lots import apply_draws, read_spendable_lots
from engine.storage.schema import accounts
from engine.storage.wallets import read_wallet


def set_account_frozen(context: EngineContext, command: FreezeAccountCommand) -> AccountStateResult:
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    require_text("reason", command.reason)
    require_reference("operator_id", command.operator_id, required=False)

    def effect(connection: Connection, now_us: int) -> AccountStateResult:
        ensure_account(
            connection, command.user_id, context.router.virtual_shard_of_user(command.user_id), now_us
        )
        set_frozen(connection, command.user_id, command.frozen, command.reason)
        reason = connection.execute(
            select(accounts.c.frozen_reason).where(accounts.c.user_id == command.user_id)
        ).scalar_one()
        return AccountStateResult(user_id=command.user_id, frozen=command.frozen, reason=reason)

    return execute_for_user(
        context,
        command,
        operation="FreezeAccount" if command.frozen else "UnfreezeAccount",
        result_type=AccountStateResult,
        effect=effect,
    )


def adjust(context: EngineContext, command: AdjustCommand) -> AdjustResult:
    """Credit (amount > 0) or debit (amount < 0) a balance from the ``adjustment:<asset>`` account.

    Points credited arrive as a lot that never expires; points debited leave FIFO like a spend.
    """
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    if command.amount == 0:
        raise invalid_argument("amount", "must not be zero")
    require_within_limit("amount", abs(command.amount))
    require_reference("reason", command.reason, required=True)
    require_reference("operator_id", command.operator_id, required=True)

    def effect(connection: Connection, now_us: int) -> AdjustResult:
        user_id, asset, amount = command.user_id, command.asset, abs(command.amount)
        virtual_shard = context.router.virtual_shard_of_user(user_id)
        transaction_id = ids.new_id("tx", virtual_shard, now_us // 1000)
        ensure_account(connection, user_id, virtual_shard, now_us)
        posting = Posting()
        if command.amount > 0 and asset is Asset.POINTS:
            # Points arrive as a never-expiring lot, after paying any points debt first.
            grant_lot(
                connection,
                user_id=user_id,
                lot_id=ids.new_id("lot", virtual_shard, now_us // 1000),
                points=amount,
                expires_at_us=None,
                now_us=now_us,
                transaction_id=transaction_id,
                posting=posting,
                source_account=adjustment(asset),
            )
        elif command.amount > 0:
            balances.credit_available(connection, user_id, asset, amount)
            posting.move(system_entry(adjustment(asset), asset, amount), user_entry(user_id, asset, amount))
        else:
            balances.debit_available(connection, user_id, asset, amount)
            if asset is Asset.POINTS:
                draws = draw_points(read_spendable_lots(connection, user_id, now_us), amount, now_us)
                if draws is None:
                    raise insufficient_funds(asset, amount)
                apply_draws(connection, transaction_id, draws, hold=False)
            posting.move(user_entry(user_id, asset, amount), system_entry(adjustment(asset), asset, amount))
        entries = posting.entries()
        memo = f"{command.reason} (by {command.operator_id})"
        append_transaction(
            connection,
            transaction_id=transaction_id,
            user_id=user_id,
            transaction_type=TransactionType.ADJUST,
            entries=entries,
            now_us=now_us,
            idempotency_key=command.idempotency_key,
            memo=memo,
        )
        view = TransactionView(
            transaction_id=transaction_id,
            type=TransactionType.ADJUST.value,
            user_id=user_id,
            created_at_us=now_us,
            idempotency_key=command.idempotency_key,
            charge_id="",
            memo=memo,
            entries=tuple(
                EntryView(
                    entry.account,
                    entry.asset.value,
                    entry.amount,
                    entry.instrument,
                    entry.bucket.value if entry.bucket else "",
                )
                for entry in entries
            ),
        )
        return AdjustResult(transaction=view, wallet=read_wallet(connection, user_id, now_us))

    return execute_for_user(
        context,
        command,
        operation="Adjust",
        result_type=AdjustResult,
        effect=effect,
    )
