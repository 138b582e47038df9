"""Issue: credit stored value — a top-up, a points lot, coins (gift cards, coupons and
activities live in their own modules and are dispatched from here)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import (
    ActivitySpec,
    CoinsSpec,
    CouponClaimSpec,
    GiftCardSpec,
    IssueCommand,
    PointsSpec,
    TopUpSpec,
)
from engine.domain.errors import InvariantViolation, invalid_argument
from engine.domain.ledger import (
    COINS_ISSUED,
    Posting,
    TransactionType,
    system_entry,
    topup_clearing,
    user_entry,
)
from engine.domain.money import Asset, require_positive_amount
from engine.domain.results import IssueResult
from engine.domain.validation import require_idempotency_key, require_reference, require_text, require_user_id
from engine.service.channel_transactions import claim_channel_transaction
from engine.service.context import EngineContext
from engine.service.idempotent import execute_for_user
from engine.service.points_grants import grant_lot
from engine.storage.accounts import ensure_account
from engine.storage.balances import credit_available
from engine.storage.ledger import append_transaction
from engine.storage.wallets import read_wallet

MICROSECONDS_PER_DAY = 86_400 * 1_000_000
#: Longest points lifetime a grant may ask for (100 years); 0 means never expires.
MAX_TTL_DAYS = 36_500


def validate_issue(command: IssueCommand) -> None:
    require_idempotency_key(command.idempotency_key)
    require_user_id(command.user_id)
    spec = command.spec
    if isinstance(spec, TopUpSpec):
        require_positive_amount("top_up.amount", spec.amount)
        if spec.asset not in (Asset.CASH, Asset.COINS):
            raise invalid_argument("top_up.asset", "a top-up buys CASH or COINS")
        require_reference("top_up.payment_channel", spec.payment_channel, required=True)
        require_reference("top_up.channel_txn_id", spec.channel_txn_id, required=True)
    elif isinstance(spec, PointsSpec):
        require_positive_amount("points.points", spec.points)
        if not 0 <= spec.ttl_days <= MAX_TTL_DAYS:
            raise invalid_argument("points.ttl_days", f"must be within 0..{MAX_TTL_DAYS}")
        require_text("points.reason", spec.reason)
    elif isinstance(spec, CoinsSpec):
        require_positive_amount("coins.coins", spec.coins)
        require_text("coins.reason", spec.reason)


def issue(context: EngineContext, command: IssueCommand) -> IssueResult:
    validate_issue(command)
    spec = command.spec
    if isinstance(spec, TopUpSpec):
        return _run(
            context, command, lambda connection, now_us: _top_up(context, connection, command, spec, now_us)
        )
    if isinstance(spec, PointsSpec):
        return _run(
            context,
            command,
            lambda connection, now_us: _grant_points(context, connection, command, spec, now_us),
        )
    if isinstance(spec, CoinsSpec):
        return _run(
            context,
            command,
            lambda connection, now_us: _grant_coins(context, connection, command, spec, now_us),
        )
    if isinstance(spec, GiftCardSpec):
        from engine.service.gift_cards import issue_gift_card, validate_gift_card_issue

        validate_gift_card_issue(spec)
        return _run(
            context,
            command,
            lambda connection, now_us: issue_gift_card(context, connection, command, spec, now_us),
        )
    if isinstance(spec, CouponClaimSpec):
        from engine.service.coupon_claims import claim_coupon

        return claim_coupon(context, command)
    if isinstance(spec, ActivitySpec):
        from engine.service.activities import grant_activity

        return grant_activity(context, command)
    raise InvariantViolation(f"an Issue kind without a use case: {type(spec).__name__}")


def _run(
    context: EngineContext,
    command: IssueCommand,
    effect: Callable[[Connection, int], IssueResult],
) -> IssueResult:
    return execute_for_user(
        context,
        command,
        operation="Issue",
        result_type=IssueResult,
        effect=effect,
    )


def new_transaction_id(context: EngineContext, user_id: int, now_us: int) -> str:
    return ids.new_id("tx", context.router.virtual_shard_of_user(user_id), now_us // 1000)


def _top_up(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: TopUpSpec, now_us: int
) -> IssueResult:
    user_id = command.user_id
    transaction_id = new_transaction_id(context, user_id, now_us)
    replay = claim_channel_transaction(
        connection,
        user_id=user_id,
        payment_channel=spec.payment_channel,
        channel_txn_id=spec.channel_txn_id,
        kind=f"TOP_UP:{spec.asset.value}",
        amount=spec.amount,
        idempotency_key=command.idempotency_key,
        transaction_id=transaction_id,
        now_us=now_us,
    )
    if replay is not None:
        return replay
    ensure_account(connection, user_id, context.router.virtual_shard_of_user(user_id), now_us)
    credit_available(connection, user_id, spec.asset, spec.amount)
    posting = Posting()
    posting.move(
        system_entry(topup_clearing(spec.payment_channel), spec.asset, spec.amount),
        user_entry(user_id, spec.asset, spec.amount),
    )
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.TOP_UP,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=f"{spec.payment_channel}:{spec.channel_txn_id}",
    )
    return IssueResult(transaction_id=transaction_id, wallet=read_wallet(connection, user_id, now_us))


def _grant_points(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: PointsSpec, now_us: int
) -> IssueResult:
    user_id = command.user_id
    transaction_id = new_transaction_id(context, user_id, now_us)
    ensure_account(connection, user_id, context.router.virtual_shard_of_user(user_id), now_us)
    lot_id = ids.new_id("lot", context.router.virtual_shard_of_user(user_id), now_us // 1000)
    expires_at_us = None if spec.ttl_days == 0 else now_us + spec.ttl_days * MICROSECONDS_PER_DAY
    posting = Posting()
    # A points debt (earned points clawed back after they were spent) is paid from the grant first.
    grant_lot(
        connection,
        user_id=user_id,
        lot_id=lot_id,
        points=spec.points,
        expires_at_us=expires_at_us,
        now_us=now_us,
        transaction_id=transaction_id,
        posting=posting,
    )
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.POINTS_GRANT,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=spec.reason,
    )
    return IssueResult(transaction_id=transaction_id, wallet=read_wallet(connection, user_id, now_us))


def _grant_coins(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: CoinsSpec, now_us: int
) -> IssueResult:
    user_id = command.user_id
    transaction_id = new_transaction_id(context, user_id, now_us)
    ensure_account(connection, user_id, context.router.virtual_shard_of_user(user_id), now_us)
    credit_available(connection, user_id, Asset.COINS, spec.coins)
    posting = Posting()
    posting.move(
        system_entry(COINS_ISSUED, Asset.COINS, spec.coins),
        user_entry(user_id, Asset.COINS, spec.coins),
    )
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.COINS_GRANT,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=spec.reason,
    )
    return IssueResult(transaction_id=transaction_id, wallet=read_wallet(connection, user_id, now_us))
