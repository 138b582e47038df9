"""The rules of a grant, for the single Issue and the bulk IssueBatch alike.

A credit moves ``amount`` of an asset from a system account (``coins_issued``, a top-up
clearing account, ...) to the user's available bucket.

A user who owes points (``accounts.points_debt``: earned points clawed back after they were
spent) pays the debt first out of any grant; the lot keeps only what is left over. The ledger
posts the kept part to the user's lot and the paid part to the user's ``points_debt`` account.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.domain.errors import require
from engine.domain.ledger import Posting, points_debt_entry, system_entry, user_entry
from engine.domain.money import Asset

__all__ = ["GrantSplit", "post_credit", "post_grant", "split_grant"]


@dataclass(frozen=True)
class GrantSplit:
    """How a grant of ``paid_debt + kept`` points is divided."""

    #: Points that settle the user's points debt (never reach a lot).
    paid_debt: int
    #: Points that go to the new lot and the POINTS balance.
    kept: int


def split_grant(points: int, debt: int) -> GrantSplit:
    """A grant of ``points`` to a user owing ``debt``: the debt is paid first."""
    require(points >= 0, "a grant is never negative")
    require(debt >= 0, "a points debt is never negative")
    paid = min(debt, points)
    return GrantSplit(paid_debt=paid, kept=points - paid)


def post_grant(
    posting: Posting, *, user_id: int, lot_id: str, split: GrantSplit, source_account: str
) -> None:
    """The grant's ledger lines: ``source_account`` to the lot, and to the debt for the paid part."""
    posting.move(
        system_entry(source_account, Asset.POINTS, split.kept),
        user_entry(user_id, Asset.POINTS, split.kept, instrument=lot_id),
    )
    posting.move(
        system_entry(source_account, Asset.POINTS, split.paid_debt),
        points_debt_entry(user_id, split.paid_debt),
    )


def post_credit(posting: Posting, *, user_id: int, asset: Asset, amount: int, source_account: str) -> None:
    """A credit's ledger lines: ``amount`` of ``asset`` from ``source_account`` to the user."""
    posting.move(system_entry(source_account, asset, amount), user_entry(user_id, asset, amount))
