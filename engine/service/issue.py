"""Issue: credit stored value — a top-up, a points lot, coins (gift cards, coupons and
activities live in their own modules and are dispatched from here)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

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
from engine.domain.ledger import COINS_ISSUED, TransactionType, topup_clearing
from engine.domain.money import Asset, require_positive_amount
from engine.domain.results import IssueResult
from engine.domain.time_units import MAX_TTL_DAYS, expiry_after_days
from engine.domain.validation import require_idempotency_key, require_reference, require_text, require_user_id
from engine.service.activities import grant_activity
from engine.service.channel_transactions import claim_channel_transaction
from engine.service.context import EngineContext
from engine.service.coupon_claims import claim_coupon
from engine.service.gift_cards import issue_gift_card, validate_gift_card_issue
from engine.service.idempotent import execute_for_user
from engine.service.movements import Movement, open_movement

__all__ = ["ISSUE_OPERATION", "issue", "validate_issue"]

#: The operation an Issue's idempotency key is claimed under (part of its payload digest);
#: IssueBatch claims its items under the same one, so a key replays across the two RPCs.
ISSUE_OPERATION = "Issue"


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
        validate_gift_card_issue(spec)
        return _run(
            context,
            command,
            lambda connection, now_us: issue_gift_card(context, connection, command, spec, now_us),
        )
    if isinstance(spec, CouponClaimSpec):
        return claim_coupon(context, command)
    if isinstance(spec, ActivitySpec):
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
        operation=ISSUE_OPERATION,
        result_type=IssueResult,
        effect=effect,
    )


def _credit(
    movement: Movement,
    command: IssueCommand,
    transaction_type: TransactionType,
    memo: str,
    change: Callable[[Movement], object],
) -> IssueResult:
    """Credits arrive even before the user's first spend: the account row is created first."""
    movement.ensure_account()
    change(movement)
    movement.record(transaction_type, idempotency_key=command.idempotency_key, memo=memo)
    return movement.issued()


def _top_up(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: TopUpSpec, now_us: int
) -> IssueResult:
    movement = open_movement(context, connection, command.user_id, now_us)
    replay = claim_channel_transaction(
        connection,
        user_id=command.user_id,
        payment_channel=spec.payment_channel,
        channel_txn_id=spec.channel_txn_id,
        kind=f"TOP_UP:{spec.asset.value}",
        amount=spec.amount,
        idempotency_key=command.idempotency_key,
        transaction_id=movement.transaction_id,
        now_us=now_us,
    )
    if replay is not None:
        return replay
    return _credit(
        movement,
        command,
        TransactionType.TOP_UP,
        f"{spec.payment_channel}:{spec.channel_txn_id}",
        lambda credited: credited.credit(spec.asset, spec.amount, topup_clearing(spec.payment_channel)),
    )


def _grant_points(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: PointsSpec, now_us: int
) -> IssueResult:
    # A points debt (earned points clawed back after they were spent) is paid from the grant first.
    return _credit(
        open_movement(context, connection, command.user_id, now_us),
        command,
        TransactionType.POINTS_GRANT,
        spec.reason,
        lambda credited: credited.grant_points(spec.points, expiry_after_days(now_us, spec.ttl_days)),
    )


def _grant_coins(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: CoinsSpec, now_us: int
) -> IssueResult:
    return _credit(
        open_movement(context, connection, command.user_id, now_us),
        command,
        TransactionType.COINS_GRANT,
        spec.reason,
        lambda credited: credited.credit(Asset.COINS, spec.coins, COINS_ISSUED),
    )
