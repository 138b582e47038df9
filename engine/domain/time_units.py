"""Clock units the engine counts in (microseconds since the epoch) and the lifetimes it accepts."""

from __future__ import annotations

__all__ = [
    "MAX_TTL_DAYS",
    "MICROSECONDS_PER_DAY",
    "MICROSECONDS_PER_MILLISECOND",
    "MICROSECONDS_PER_SECOND",
    "expiry_after_days",
]

MICROSECONDS_PER_MILLISECOND = 1_000
MICROSECONDS_PER_SECOND = 1_000_000
MICROSECONDS_PER_DAY = 86_400 * MICROSECONDS_PER_SECOND
#: Longest lifetime a grant (points lot, gift card) may ask for: 100 years; 0 means never expires.
MAX_TTL_DAYS = 36_500


def expiry_after_days(now_us: int, ttl_days: int) -> int | None:
    """The expiry instant ``ttl_days`` after ``now_us``; ``None`` (never) for ``ttl_days <= 0``."""
    return None if ttl_days <= 0 else now_us + ttl_days * MICROSECONDS_PER_DAY
