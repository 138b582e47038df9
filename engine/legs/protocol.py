"""The four movements every kind of leg makes, and what they are given.

*take* (Charge, a till redemption: debit, or hold for an authorization), *settle* (Capture: held
value leaves for good), *release* (Void, hold expiry, the uncaptured rest of a partial capture:
held value returns), *give back* (Refund: captured value returns).

A coupon leg moves the same way, whole: take is AUTHORIZE (hold) or USE, settle is CAPTURE,
release is RELEASE, give back is the FULL_REFUND of its order (the refund allocation hands a
coupon leg to give back only when the refund completes the order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection

from engine.domain.ledger import Posting
from engine.domain.leg_kind import LegKind

__all__ = ["LegHandler", "LegMove", "LegScope"]


@dataclass(frozen=True)
class LegMove:
    """One leg's movement: ``value`` fen, ``units`` in the leg's own unit."""

    kind: LegKind
    instrument: str
    value: int
    units: int


@dataclass
class LegScope:
    """The transaction a leg moves in: the charge it belongs to and the posting being built."""

    connection: Connection
    user_id: int
    charge_id: str
    merchant_id: str
    now_us: int
    posting: Posting


class LegHandler(Protocol):
    def take(self, scope: LegScope, leg: LegMove, *, hold: bool) -> None: ...

    def settle(self, scope: LegScope, leg: LegMove) -> None: ...

    def release(self, scope: LegScope, leg: LegMove) -> None: ...

    def give_back(self, scope: LegScope, leg: LegMove) -> None: ...
