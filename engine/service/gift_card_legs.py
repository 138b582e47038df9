"""Gift-card legs of a charge: the user's own cards, drawn in the order listed.

Gift cards arrive with the two-phase issue; until then a charge naming one is refused as
UNIMPLEMENTED rather than silently ignored.
"""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, Reason
from engine.domain.results import InstrumentAmount
from engine.service.legs import LegMove, LegScope


def resolve_gift_cards(connection: Connection, command: ChargeCommand, now_us: int) -> list[InstrumentAmount]:
    if command.gift_card_codes:
        raise CofferError(Reason.NOT_IMPLEMENTED, "gift cards in charges are not available yet")
    return []


def take_gift_card(scope: LegScope, leg: LegMove, *, hold: bool) -> None:
    raise CofferError(Reason.NOT_IMPLEMENTED, "gift cards in charges are not available yet")


def give_back_gift_card(scope: LegScope, leg: LegMove) -> None:
    raise CofferError(Reason.NOT_IMPLEMENTED, "gift cards in charges are not available yet")
