"""Admin operations on a wallet: freeze / unfreeze, and signed manual adjustments.

A frozen wallet refuses to spend (Charge: ACCOUNT_FROZEN) but still receives credits: a payment
callback for money already paid must never be lost because risk control froze the account.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.commands import AdjustCommand, FreezeAccountCommand
from engine.domain.errors import invalid_argument
from engine.domain.ledger import TransactionType, adjustment
from engine.domain.money import Asset, require_within_limit
from engine.domain.results import AccountStateResult, AdjustResult, EntryView, TransactionView
from engine.domain.validation import require_idempotency_key, require_reference, require_text, require_user_id
from engine.service.context import EngineContext
from engine.service.idempotent import execute_for_user
from engine.service.movements import open_movement
from engine.storage.accounts import ensure_account, read_frozen_reason, set_frozen

__all__ = ["adjust", "set_account_frozen"]


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
        reason = read_frozen_reason(connection, command.user_id)
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
        movement = open_movement(context, connection, user_id, now_us)
        movement.ensure_account()
        if command.amount > 0 and asset is Asset.POINTS:
            # Points arrive as a never-expiring lot, after paying any points debt first.
            movement.grant_points(amount, None, source_account=adjustment(asset))
        elif command.amount > 0:
            movement.credit(asset, amount, adjustment(asset))
        else:
            movement.debit(asset, amount, adjustment(asset))
        memo = f"{command.reason} (by {command.operator_id})"
        entries = movement.record(TransactionType.ADJUST, idempotency_key=command.idempotency_key, memo=memo)
        view = TransactionView(
            transaction_id=movement.transaction_id,
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
        return AdjustResult(transaction=view, wallet=movement.wallet())

    return execute_for_user(
        context,
        command,
        operation="Adjust",
        result_type=AdjustResult,
        effect=effect,
    )
