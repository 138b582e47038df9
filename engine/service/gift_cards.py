"""Gift cards: issue and reload (Issue), till redemption (Redeem), balance check (GetGiftCard).

* ``Issue(gift_card{amount})`` without ``code`` creates a card owned by ``user_id`` whose code
  carries the owner's virtual shard; with ``code`` it reloads that user's own card (ACTIVE or
  EMPTY; a FROZEN or EXPIRED card is GIFT_CARD_INACTIVE). Sold through ``payment_channel`` (then
  deduped on ``(payment_channel, channel_txn_id)`` like a top-up, money from
  ``topup_clearing:<channel>``), or promotional from ``coupon_expense`` when no channel is named.
  ``ttl_days`` > 0 sets the expiry of a new card; on a reload it extends the expiry to at least
  ``now + ttl_days`` (it never shortens it).
* ``Redeem(gift_card{code, amount})`` at the till: all or nothing, never below zero; the
  idempotency key is scoped to the card's owner; the redemption is recorded as a charge of kind
  GIFT_CARD_REDEMPTION whose ``charge_id`` is the returned ``transaction_id``, so ``Refund``
  accepts it.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import GiftCardRedemptionSpec, GiftCardSpec, IssueCommand, RedeemCommand
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.ledger import (
    COUPON_EXPENSE,
    Posting,
    TransactionType,
    gift_card_entry,
    system_entry,
    topup_clearing,
)
from engine.domain.leg_kind import LegKind
from engine.domain.money import Asset, balance_limit_error, require_positive_amount
from engine.domain.results import Breakdown, GiftCardView, InstrumentAmount, IssueResult, RedeemResult
from engine.domain.time_units import MAX_TTL_DAYS, expiry_after_days
from engine.domain.validation import require_idempotency_key, require_reference
from engine.legs import LegMove
from engine.legs.gift_card import gift_card_inactive, gift_card_not_found, gift_card_short
from engine.service.channel_transactions import claim_channel_transaction
from engine.service.context import EngineContext
from engine.service.idempotent import execute_idempotent
from engine.service.till import record_till_redemption
from engine.storage.accounts import ensure_account, require_not_frozen
from engine.storage.database import read_only
from engine.storage.gift_cards import (
    ACTIVE,
    EMPTY,
    change_balance,
    effective_state,
    extend_expiry,
    insert_card,
    read_card,
    view_of,
)
from engine.storage.ledger import append_transaction
from engine.storage.router import Shard
from engine.storage.wallets import read_wallet_balances

__all__ = [
    "get_gift_card",
    "issue_gift_card",
    "redeem_gift_card",
    "validate_gift_card_issue",
    "validate_gift_card_redemption",
]

#: A fresh code colliding with an existing one (55 random bits) is retried at most this often.
MAX_CODE_ATTEMPTS = 5
REDEMPTION_KIND = "GIFT_CARD_REDEMPTION"


def validate_gift_card_issue(spec: GiftCardSpec) -> None:
    require_positive_amount("gift_card.amount", spec.amount)
    require_reference("gift_card.code", spec.code, required=False)
    require_reference("gift_card.payment_channel", spec.payment_channel, required=False)
    require_reference("gift_card.channel_txn_id", spec.channel_txn_id, required=False)
    if bool(spec.payment_channel) != bool(spec.channel_txn_id):
        field = "gift_card.channel_txn_id" if spec.payment_channel else "gift_card.payment_channel"
        raise invalid_argument(field, "payment_channel and channel_txn_id go together")
    if not 0 <= spec.ttl_days <= MAX_TTL_DAYS:
        raise invalid_argument("gift_card.ttl_days", f"must be within 0..{MAX_TTL_DAYS}")


def issue_gift_card(
    context: EngineContext, connection: Connection, command: IssueCommand, spec: GiftCardSpec, now_us: int
) -> IssueResult:
    user_id = command.user_id
    virtual_shard = context.router.virtual_shard_of_user(user_id)
    transaction_id = ids.new_transaction_id(virtual_shard, now_us)
    if spec.payment_channel:
        replay = claim_channel_transaction(
            connection,
            user_id=user_id,
            payment_channel=spec.payment_channel,
            channel_txn_id=spec.channel_txn_id,
            kind=LegKind.GIFT_CARD.value,
            amount=spec.amount,
            idempotency_key=command.idempotency_key,
            transaction_id=transaction_id,
            now_us=now_us,
        )
        if replay is not None:
            return replay
    ensure_account(connection, user_id, virtual_shard, now_us)
    ttl_expiry = expiry_after_days(now_us, spec.ttl_days)
    if spec.code:
        code = _reload(connection, user_id, spec, ttl_expiry, now_us)
    else:
        code = _create(connection, user_id, virtual_shard, spec.amount, ttl_expiry, now_us)
    source = (
        system_entry(topup_clearing(spec.payment_channel), Asset.CASH, spec.amount)
        if spec.payment_channel
        else system_entry(COUPON_EXPENSE, Asset.CASH, spec.amount)
    )
    posting = Posting()
    posting.move(source, gift_card_entry(user_id, code, spec.amount))
    append_transaction(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.GIFT_CARD_ISSUE,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=(
            f"gift card {code}"
            + (
                f" via {spec.payment_channel}:{spec.channel_txn_id}"
                if spec.payment_channel
                else " (promotional)"
            )
        ),
    )
    row = read_card(connection, code)
    if row is None:
        raise gift_card_not_found(code)
    return IssueResult(
        transaction_id=transaction_id,
        wallet=read_wallet_balances(connection, user_id, now_us),
        gift_card=view_of(row, now_us),
    )


def _create(
    connection: Connection,
    user_id: int,
    virtual_shard: int,
    amount: int,
    expires_at_us: int | None,
    now_us: int,
) -> str:
    for _ in range(MAX_CODE_ATTEMPTS):
        code = ids.new_code(virtual_shard)
        if insert_card(
            connection,
            code=code,
            user_id=user_id,
            available=amount,
            expires_at_us=expires_at_us,
            now_us=now_us,
        ):
            return code
    raise CofferError(Reason.CONTENTION, "could not draw a fresh gift-card code; retry with the same key")


def _reload(
    connection: Connection, user_id: int, spec: GiftCardSpec, ttl_expiry: int | None, now_us: int
) -> str:
    code = ids.normalize_code(spec.code)
    if code is None:
        raise gift_card_not_found(spec.code, "gift_card.code")
    row = read_card(connection, code, lock=True)
    if row is None or row.user_id != user_id:
        raise gift_card_not_found(code, "gift_card.code")
    state = effective_state(row.state, row.expires_at_us, now_us)
    if state not in (ACTIVE, EMPTY):
        raise gift_card_inactive(code, state)
    if not change_balance(connection, code, available_delta=spec.amount, held_delta=0, now_us=now_us):
        raise balance_limit_error(LegKind.GIFT_CARD.value)
    if ttl_expiry is not None and row.expires_at_us is not None and ttl_expiry > row.expires_at_us:
        extend_expiry(connection, code, ttl_expiry)
    return code


def _card_shard(context: EngineContext, code: str, field: str) -> tuple[Shard, str]:
    canonical = ids.normalize_code(code)
    shard = context.router.for_code(code) if canonical else None
    if canonical is None or shard is None:
        raise gift_card_not_found(code, field)
    return shard, canonical


def _owner_of_card(code: str, field: str):  # type: ignore[no-untyped-def]
    def owner(connection: Connection) -> int:
        row = read_card(connection, code)
        if row is None:
            raise gift_card_not_found(code, field)
        return int(row.user_id)

    return owner


def get_gift_card(context: EngineContext, code: str) -> GiftCardView:
    """The POS balance check; an unknown or malformed code is GIFT_CARD_NOT_FOUND."""
    if not code:
        raise invalid_argument("code", "is required")
    shard, canonical = _card_shard(context, code, "code")
    with read_only(shard.engine) as connection:
        row = read_card(connection, canonical)
        if row is None:
            raise gift_card_not_found(canonical)
        return view_of(row, context.now_us())


def validate_gift_card_redemption(command: RedeemCommand, spec: GiftCardRedemptionSpec) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("merchant_id", command.merchant_id, required=True)
    if not spec.code:
        raise invalid_argument("gift_card.code", "is required")
    require_reference("gift_card.code", spec.code, required=True)
    require_positive_amount("gift_card.amount", spec.amount)


def redeem_gift_card(
    context: EngineContext, command: RedeemCommand, spec: GiftCardRedemptionSpec
) -> RedeemResult:
    validate_gift_card_redemption(command, spec)
    shard, code = _card_shard(context, spec.code, "gift_card.code")
    return execute_idempotent(
        context,
        shard=shard,
        key=command.idempotency_key,
        operation="Redeem",
        command=command,
        result_type=RedeemResult,
        owner=_owner_of_card(code, "gift_card.code"),
        effect=lambda connection, now_us: _redeem(context, connection, command, code, spec.amount, now_us),
    )


def _redeem(
    context: EngineContext,
    connection: Connection,
    command: RedeemCommand,
    code: str,
    amount: int,
    now_us: int,
) -> RedeemResult:
    row = read_card(connection, code, lock=True)
    if row is None:
        raise gift_card_not_found(code, "gift_card.code")
    user_id = int(row.user_id)
    require_not_frozen(connection, user_id)
    state = effective_state(row.state, row.expires_at_us, now_us)
    if state != ACTIVE:
        raise gift_card_inactive(code, state)
    if row.available < amount:
        raise gift_card_short(code, amount)
    # The charge id is the transaction id, so Refund accepts what the till was given.
    transaction_id = ids.new_transaction_id(context.router.virtual_shard_of_user(user_id), now_us)
    breakdown = Breakdown(gift_card_amount=amount, gift_cards=(InstrumentAmount(code, amount),))
    record_till_redemption(
        connection,
        transaction_id=transaction_id,
        user_id=user_id,
        merchant_id=command.merchant_id,
        kind=REDEMPTION_KIND,
        leg=LegMove(LegKind.GIFT_CARD, code, amount, amount),
        breakdown=breakdown,
        now_us=now_us,
        idempotency_key=command.idempotency_key,
        memo=f"gift card {code} at {command.merchant_id}",
    )
    fresh = read_card(connection, code)
    if fresh is None:
        raise gift_card_not_found(code, "gift_card.code")
    return RedeemResult(transaction_id=transaction_id, amount=amount, gift_card=view_of(fresh, now_us))
