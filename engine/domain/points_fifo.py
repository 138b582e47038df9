"""Points lots: spent oldest-expiry first (seed 002); a never-expiring lot is spent last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.domain.errors import require


@dataclass(frozen=True)
class Lot:
    lot_id: str
    remaining: int
    expires_at_us: int | None
    granted_at_us: int


@dataclass(frozen=True)
class LotDraw:
    lot_id: str
    points: int


def spending_order(lots: Sequence[Lot]) -> list[Lot]:
    """Oldest expiry first; lots that never expire last; ties by grant time then id."""
    never = 2**63
    return sorted(
        lots,
        key=lambda lot: (
            never if lot.expires_at_us is None else lot.expires_at_us,
            lot.granted_at_us,
            lot.lot_id,
        ),
    )


def live_lots(lots: Sequence[Lot], now_us: int) -> list[Lot]:
    """An expired lot stops counting at its instant, whether or not the job has run."""
    return [
        lot for lot in lots if lot.remaining > 0 and (lot.expires_at_us is None or lot.expires_at_us > now_us)
    ]


def draw_points(lots: Sequence[Lot], points: int, now_us: int) -> list[LotDraw] | None:
    """The draws that spend ``points`` FIFO from live lots, or ``None`` if they do not suffice."""
    require(points >= 0, "points to draw are not negative")
    remaining = points
    draws: list[LotDraw] = []
    for lot in spending_order(live_lots(lots, now_us)):
        if remaining == 0:
            break
        take = min(lot.remaining, remaining)
        draws.append(LotDraw(lot.lot_id, take))
        remaining -= take
    if remaining:
        return None
    return draws


def lot_has_expired(expires_at_us: int | None, expired_at_us: int | None, now_us: int) -> bool:
    """Expired by its instant, or already closed by the expiry job (whose clock may run ahead):
    either way points returned to it expire again at once instead of refilling it."""
    return expired_at_us is not None or (expires_at_us is not None and expires_at_us <= now_us)
