"""Assets, amount limits and conversions. Every amount is an ``int`` of minor units (fen)."""

from __future__ import annotations

import enum

from engine.domain.errors import CofferError, Reason, invalid_argument

#: One request moves at most this many fen (CONTRACT §1).
MAX_REQUEST_AMOUNT_FEN = 10**13
#: No balance may pass this (CONTRACT §1); nothing ever wraps an int64.
MAX_BALANCE_FEN = 2**62
#: Basis points in one whole (10000 bps = 100%).
BPS_PER_WHOLE = 10_000


class Asset(enum.Enum):
    """Balances a wallet holds. Gift cards are instruments with their own balance, not assets."""

    CASH = "CASH"
    POINTS = "POINTS"
    COINS = "COINS"


def require_positive_amount(field: str, amount: int) -> int:
    """A movement amount: > 0 and within the per-request limit."""
    if amount <= 0:
        raise invalid_argument(field, "must be greater than zero")
    return require_within_limit(field, amount)


def require_within_limit(field: str, amount: int) -> int:
    """``amount`` (already known ≥ 0) must not pass the per-request limit."""
    if amount > MAX_REQUEST_AMOUNT_FEN:
        raise CofferError(
            Reason.AMOUNT_LIMIT_EXCEEDED,
            f"{field}: {amount} exceeds the per-request limit of {MAX_REQUEST_AMOUNT_FEN}",
            metadata={"field": field, "limit": str(MAX_REQUEST_AMOUNT_FEN)},
            field_violations={field: "exceeds the per-request limit"},
        )
    return amount


def require_non_negative_amount(field: str, amount: int) -> int:
    if amount < 0:
        raise invalid_argument(field, "must not be negative")
    return require_within_limit(field, amount)


def balance_limit_error(asset: str) -> CofferError:
    return CofferError(
        Reason.AMOUNT_LIMIT_EXCEEDED,
        f"the {asset} balance would pass {MAX_BALANCE_FEN}",
        metadata={"asset": asset, "limit": str(MAX_BALANCE_FEN)},
    )


def apply_bps_floor(amount_fen: int, rate_bps: int) -> int:
    """``amount × rate / 10000`` rounded down: exact integer arithmetic, no floats."""
    return (amount_fen * rate_bps) // BPS_PER_WHOLE


def points_to_fen(points: int, points_per_yuan: int) -> int:
    """Value of ``points`` in fen, rounded down (the user never gains a fraction of a fen).

    ``points_per_yuan`` = 100 means 100 points = 1 CNY = 100 fen, i.e. 1 point = 1 fen.
    """
    return (points * 100) // points_per_yuan


def fen_to_points_ceiling(amount_fen: int, points_per_yuan: int) -> int:
    """Points needed to cover ``amount_fen`` (rounded up so the value is never short)."""
    return -((-amount_fen * points_per_yuan) // 100)
