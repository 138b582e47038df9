"""CASH and COINS legs: the user's wallet balance of that asset.

Ledger shape, for ``v`` fen of value taken from a user:

* CASH:  user.available -> merchant_payable (or user.available -> user.held -> merchant_payable)
* COINS: user COINS -> coins_redeemed, and coins_funding -> merchant_payable in CASH
* POINTS (:mod:`engine.legs.points`) has the COINS shape with its own accounts.
"""

from __future__ import annotations

from engine.domain.ledger import (
    COINS_FUNDING,
    COINS_REDEEMED,
    POINTS_FUNDING,
    POINTS_REDEEMED,
    Bucket,
    merchant_payable,
    system_entry,
    user_entry,
)
from engine.domain.money import Asset
from engine.legs.protocol import LegMove, LegScope
from engine.storage import balances

__all__ = ["WalletAssetHandler"]

_REDEEMED = {Asset.COINS: COINS_REDEEMED, Asset.POINTS: POINTS_REDEEMED}
_FUNDING = {Asset.COINS: COINS_FUNDING, Asset.POINTS: POINTS_FUNDING}


class WalletAssetHandler:
    """A leg paid from the user's balance of ``asset``."""

    def __init__(self, asset: Asset) -> None:
        self.asset = asset

    def take(self, scope: LegScope, leg: LegMove, *, hold: bool) -> None:
        if hold:
            balances.hold(scope.connection, scope.user_id, self.asset, leg.units)
            scope.posting.move(
                user_entry(scope.user_id, self.asset, leg.units, Bucket.AVAILABLE),
                user_entry(scope.user_id, self.asset, leg.units, Bucket.HELD),
            )
        else:
            balances.debit_available(scope.connection, scope.user_id, self.asset, leg.units)
            self.post_taken(scope, leg)

    def post_taken(self, scope: LegScope, leg: LegMove) -> None:
        """The entries of an immediate take whose balance row was already debited (a batch of
        cash charges debits its users' rows with one statement: engine.service.cash_charges)."""
        self._pay_merchant(scope, leg, Bucket.AVAILABLE)

    def settle(self, scope: LegScope, leg: LegMove) -> None:
        """Capture: ``leg`` (a part of the held value) leaves the user's ``held`` for the merchant."""
        balances.settle_held(scope.connection, scope.user_id, self.asset, leg.units)
        self._pay_merchant(scope, leg, Bucket.HELD)

    def release(self, scope: LegScope, leg: LegMove) -> None:
        """Held value returns to the user's ``available``."""
        balances.release(scope.connection, scope.user_id, self.asset, leg.units)
        self._post_release(scope, leg)

    def give_back(self, scope: LegScope, leg: LegMove) -> None:
        """Return captured value to the user (a refund)."""
        balances.credit_available(scope.connection, scope.user_id, self.asset, leg.units)
        self._post_give_back(scope, leg)

    def _post_release(self, scope: LegScope, leg: LegMove) -> None:
        scope.posting.move(
            user_entry(scope.user_id, self.asset, leg.units, Bucket.HELD),
            user_entry(scope.user_id, self.asset, leg.units, Bucket.AVAILABLE),
        )

    def _pay_merchant(self, scope: LegScope, leg: LegMove, source_bucket: Bucket) -> None:
        """Value leaves the user's ``source_bucket`` for good and the merchant is credited."""
        if self.asset is Asset.CASH:
            scope.posting.move(
                user_entry(scope.user_id, self.asset, leg.value, source_bucket),
                system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
            )
            return
        scope.posting.move(
            user_entry(scope.user_id, self.asset, leg.units, source_bucket),
            system_entry(_REDEEMED[self.asset], self.asset, leg.units),
        )
        scope.posting.move(
            system_entry(_FUNDING[self.asset], Asset.CASH, leg.value),
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
        )

    def _post_give_back(self, scope: LegScope, leg: LegMove) -> None:
        if self.asset is Asset.CASH:
            scope.posting.move(
                system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
                user_entry(scope.user_id, self.asset, leg.value),
            )
            return
        scope.posting.move(
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
            system_entry(_FUNDING[self.asset], Asset.CASH, leg.value),
        )
        scope.posting.move(
            system_entry(_REDEEMED[self.asset], self.asset, leg.units),
            user_entry(scope.user_id, self.asset, leg.units),
        )
