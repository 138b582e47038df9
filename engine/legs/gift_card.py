"""Gift-card legs of a charge: the user's own cards, drawn in the order listed.

Ledger, for ``v`` fen: ``gift_card[code].available -> merchant_payable`` (or via
``gift_card[code].held``); the gift-card account carries the owner's ``user_id`` and the code as
its instrument, so each card's balance can be checked against its entries (CONTRACT §8).
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain import ids
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, InvariantViolation, Reason, invalid_argument
from engine.domain.ledger import Bucket, gift_card_entry, merchant_payable, system_entry
from engine.domain.leg_kind import LegKind
from engine.domain.money import Asset, balance_limit_error
from engine.domain.results import InstrumentAmount
from engine.legs.protocol import LegMove, LegScope
from engine.storage.gift_cards import ACTIVE, change_balance, effective_state, lock_cards

__all__ = [
    "GiftCardHandler",
    "gift_card_inactive",
    "gift_card_not_found",
    "gift_card_short",
    "resolve_gift_cards",
]


def gift_card_not_found(code: str, field: str = "code") -> CofferError:
    return CofferError(
        Reason.GIFT_CARD_NOT_FOUND,
        f"no gift card {code!r}",
        metadata={"code": code, "field": field},
    )


def gift_card_inactive(code: str, state: str) -> CofferError:
    return CofferError(
        Reason.GIFT_CARD_INACTIVE,
        f"gift card {code} is {state}",
        metadata={"code": code, "state": state},
    )


def gift_card_short(code: str, needed: int) -> CofferError:
    return CofferError(
        Reason.INSUFFICIENT_FUNDS,
        f"gift card {code} does not hold {needed}",
        # ``instrument`` tells a caller the card fell short, not the cash balance (``asset`` stays
        # CASH: the value a card holds is cash).
        metadata={
            "asset": Asset.CASH.value,
            "instrument": LegKind.GIFT_CARD.value,
            "code": code,
            "needed": str(needed),
        },
    )


def resolve_gift_cards(connection: Connection, command: ChargeCommand, now_us: int) -> list[InstrumentAmount]:
    """Each named card's available balance, in the order listed.

    Only the charging user's own cards, ACTIVE and unexpired; the rows are locked (sorted by
    code, the engine's lock order) so the plan cannot change before the legs are taken.
    """
    if not command.gift_card_codes:
        return []
    canonical: list[str] = []
    for index, typed in enumerate(command.gift_card_codes):
        code = ids.normalize_code(typed)
        if code is None:
            raise gift_card_not_found(typed, f"gift_card_codes[{index}]")
        if code in canonical:
            raise invalid_argument("gift_card_codes", "a gift card is named twice")
        canonical.append(code)
    rows = lock_cards(connection, canonical)
    available: list[InstrumentAmount] = []
    for index, code in enumerate(canonical):
        row = rows.get(code)
        if row is None or row.user_id != command.user_id:
            raise gift_card_not_found(code, f"gift_card_codes[{index}]")
        state = effective_state(row.state, row.expires_at_us, now_us)
        if state != ACTIVE:
            raise gift_card_inactive(code, state)
        available.append(InstrumentAmount(code, row.available))
    return available


class GiftCardHandler:
    def take(self, scope: LegScope, leg: LegMove, *, hold: bool) -> None:
        # The conditional UPDATE is the guard: a concurrent use cannot take the card below zero.
        if not change_balance(
            scope.connection,
            leg.instrument,
            available_delta=-leg.value,
            held_delta=leg.value if hold else 0,
            now_us=scope.now_us,
            require_usable=True,
        ):
            raise gift_card_short(leg.instrument, leg.value)
        source = gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.AVAILABLE)
        if hold:
            scope.posting.move(source, gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.HELD))
        else:
            scope.posting.move(
                source, system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value)
            )

    def settle(self, scope: LegScope, leg: LegMove) -> None:
        """Capture: the held value leaves the card for the merchant."""
        self._change_held(scope, leg, available_delta=0)
        scope.posting.move(
            gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.HELD),
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
        )

    def release(self, scope: LegScope, leg: LegMove) -> None:
        """Void, expiry or the uncaptured rest: held value returns to the card's available."""
        self._change_held(scope, leg, available_delta=leg.value)
        scope.posting.move(
            gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.HELD),
            gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.AVAILABLE),
        )

    def give_back(self, scope: LegScope, leg: LegMove) -> None:
        """A refund credits the card it came from (an EMPTY card becomes ACTIVE again; an EXPIRED
        or FROZEN card keeps its state and the value stays on it)."""
        if not change_balance(
            scope.connection, leg.instrument, available_delta=leg.value, held_delta=0, now_us=scope.now_us
        ):
            raise balance_limit_error(LegKind.GIFT_CARD.value)
        scope.posting.move(
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
            gift_card_entry(scope.user_id, leg.instrument, leg.value, Bucket.AVAILABLE),
        )

    @staticmethod
    def _change_held(scope: LegScope, leg: LegMove, *, available_delta: int) -> None:
        if not change_balance(
            scope.connection,
            leg.instrument,
            available_delta=available_delta,
            held_delta=-leg.value,
            now_us=scope.now_us,
        ):
            raise InvariantViolation(f"held value of gift card {leg.instrument} is short of {leg.value}")
