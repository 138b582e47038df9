"""Points exchanged for cash (``Redeem(points_exchange)``, seed 002).

``points`` (a multiple of ``exchange_points_per_fen``) are spent FIFO from the user's live lots
and ``points / exchange_points_per_fen`` fen are credited to the cash balance. A user exchanges
at most ``exchange_daily_cap_points`` per calendar day in the business time zone
(``COFFER_TIMEZONE``); beyond it: RESOURCE_EXHAUSTED / EXCHANGE_LIMIT_REACHED. The day's total is
one row per user and day, raised by a conditional UPDATE, so concurrent exchanges never pass the
cap. Ledger (type EXCHANGE): ``user POINTS -> points_redeemed`` and
``points_funding -> user CASH``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from engine.domain.commands import PointsExchangeSpec, RedeemCommand
from engine.domain.errors import CofferError, Reason, invalid_argument
from engine.domain.ledger import (
    POINTS_FUNDING,
    POINTS_REDEEMED,
    TransactionType,
    system_entry,
    user_entry,
)
from engine.domain.money import Asset, require_positive_amount
from engine.domain.results import RedeemResult
from engine.domain.time_units import MICROSECONDS_PER_SECOND
from engine.domain.validation import require_idempotency_key, require_reference, require_user_id
from engine.service.context import EngineContext
from engine.service.idempotent import execute_idempotent
from engine.service.movements import open_movement
from engine.storage.accounts import require_not_frozen
from engine.storage.balances import credit_available
from engine.storage.exchange_days import raise_daily_total

__all__ = ["business_day", "exchange_points", "validate_exchange"]


def business_day(now_us: int, timezone: str) -> str:
    """The calendar day (ISO) of ``now_us`` in the business time zone."""
    return datetime.fromtimestamp(now_us // MICROSECONDS_PER_SECOND, ZoneInfo(timezone)).date().isoformat()


def validate_exchange(context: EngineContext, command: RedeemCommand, spec: PointsExchangeSpec) -> None:
    require_idempotency_key(command.idempotency_key)
    require_reference("merchant_id", command.merchant_id, required=False)
    require_user_id(spec.user_id, "points_exchange.user_id")
    require_positive_amount("points_exchange.points", spec.points)
    rate = context.settings.exchange_points_per_fen
    if spec.points % rate:
        raise invalid_argument("points_exchange.points", f"must be a multiple of {rate}")


def exchange_points(context: EngineContext, command: RedeemCommand, spec: PointsExchangeSpec) -> RedeemResult:
    validate_exchange(context, command, spec)
    return execute_idempotent(
        context,
        shard=context.router.for_user(spec.user_id),
        key=command.idempotency_key,
        operation="Redeem",
        command=command,
        result_type=RedeemResult,
        owner=spec.user_id,
        effect=lambda connection, now_us: _exchange(context, connection, command, spec, now_us),
    )


def _raise_daily_total(connection: Connection, user_id: int, day: str, points: int, cap: int) -> None:
    if not raise_daily_total(connection, user_id, day, points, cap):
        raise CofferError(
            Reason.EXCHANGE_LIMIT_REACHED,
            f"exchanging {points} points would pass the daily cap of {cap} on {day}",
            metadata={
                "user_id": str(user_id),
                "day": day,
                "cap": str(cap),
                "field": "points_exchange.points",
            },
        )


def _exchange(
    context: EngineContext,
    connection: Connection,
    command: RedeemCommand,
    spec: PointsExchangeSpec,
    now_us: int,
) -> RedeemResult:
    user_id = spec.user_id
    settings = context.settings
    require_not_frozen(connection, user_id)
    _raise_daily_total(
        connection,
        user_id,
        business_day(now_us, settings.timezone),
        spec.points,
        settings.exchange_daily_cap_points,
    )
    cash = spec.points // settings.exchange_points_per_fen
    movement = open_movement(context, connection, user_id, now_us)
    # Lock order: CASH, POINTS, then the points lots.
    credit_available(connection, user_id, Asset.CASH, cash)
    for draw in movement.take_available(Asset.POINTS, spec.points):
        movement.posting.move(
            user_entry(user_id, Asset.POINTS, draw.points, instrument=draw.lot_id),
            system_entry(POINTS_REDEEMED, Asset.POINTS, draw.points, instrument=draw.lot_id),
        )
    movement.posting.move(
        system_entry(POINTS_FUNDING, Asset.CASH, cash), user_entry(user_id, Asset.CASH, cash)
    )
    movement.record(
        TransactionType.EXCHANGE,
        idempotency_key=command.idempotency_key,
        memo=f"{spec.points} points for {cash} fen",
    )
    return RedeemResult(transaction_id=movement.transaction_id, amount=cash, wallet=movement.wallet())
