"""What each kind of charge leg does to balances, lots, instruments and the ledger.

A leg moves through: *take* (at Charge: debit, or hold for an authorization), *settle* (at
Capture: held value leaves for good), *release* (Void, hold expiry, the uncaptured rest of a
partial capture: held value returns), *give back* (Refund: captured value returns).

Ledger shape, for ``v`` fen of value taken from a user:

* CASH:   user.available -> merchant_payable (or user.available -> user.held -> merchant_payable)
* COINS:  user COINS -> coins_redeemed, and coins_funding -> merchant_payable in CASH
* POINTS: user POINTS -> points_redeemed, and points_funding -> merchant_payable in CASH
* GIFT_CARD and COUPON legs are handled by their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from engine.domain.errors import InvariantViolation
from engine.domain.ledger import (
    COINS_FUNDING,
    COINS_REDEEMED,
    POINTS_FUNDING,
    POINTS_REDEEMED,
    Bucket,
    Posting,
    merchant_payable,
    system_entry,
    user_entry,
)
from engine.domain.money import Asset
from engine.domain.points_fifo import draw_points
from engine.storage import balances
from engine.storage.balances import insufficient_funds
from engine.storage.lots import apply_draws, read_spendable_lots

_ASSET_OF_KIND = {"CASH": Asset.CASH, "COINS": Asset.COINS, "POINTS": Asset.POINTS}
_REDEEMED = {Asset.COINS: COINS_REDEEMED, Asset.POINTS: POINTS_REDEEMED}
_FUNDING = {Asset.COINS: COINS_FUNDING, Asset.POINTS: POINTS_FUNDING}


@dataclass(frozen=True)
class LegMove:
    """One leg's movement: ``value`` fen, ``units`` in the leg's own unit."""

    kind: str
    instrument: str
    value: int
    units: int


@dataclass
class LegScope:
    connection: Connection
    user_id: int
    charge_id: str
    merchant_id: str
    now_us: int
    posting: Posting


def _asset(kind: str) -> Asset:
    asset = _ASSET_OF_KIND.get(kind)
    if asset is None:
        # Gift-card and coupon legs have their own modules; reaching here with one is a bug.
        raise InvariantViolation(f"{kind} legs do not move a wallet balance")
    return asset


def _pay_merchant(scope: LegScope, asset: Asset, leg: LegMove, source_bucket: Bucket) -> None:
    """Value leaves the user's ``source_bucket`` for good and the merchant is credited."""
    if asset is Asset.CASH:
        scope.posting.move(
            user_entry(scope.user_id, asset, leg.value, source_bucket),
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
        )
        return
    scope.posting.move(
        user_entry(scope.user_id, asset, leg.units, source_bucket),
        system_entry(_REDEEMED[asset], asset, leg.units),
    )
    scope.posting.move(
        system_entry(_FUNDING[asset], Asset.CASH, leg.value),
        system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
    )


def take(scope: LegScope, leg: LegMove, *, hold: bool) -> None:
    asset = _asset(leg.kind)
    connection = scope.connection
    # The balance row first, then the lots: the lock order every use case follows.
    if hold:
        balances.hold(connection, scope.user_id, asset, leg.units)
        scope.posting.move(
            user_entry(scope.user_id, asset, leg.units, Bucket.AVAILABLE),
            user_entry(scope.user_id, asset, leg.units, Bucket.HELD),
        )
    else:
        balances.debit_available(connection, scope.user_id, asset, leg.units)
        _pay_merchant(scope, asset, leg, Bucket.AVAILABLE)
    if asset is Asset.POINTS:
        # The balance may still count a lot that expired before the job ran; only live lots pay.
        lots = read_spendable_lots(connection, scope.user_id, scope.now_us)
        draws = draw_points(lots, leg.units, scope.now_us)
        if draws is None:
            raise insufficient_funds(Asset.POINTS, leg.units)
        apply_draws(connection, scope.charge_id, draws, hold=hold)


def give_back(scope: LegScope, leg: LegMove) -> None:
    """Return captured value to the user (a refund)."""
    asset = _asset(leg.kind)
    if asset is Asset.POINTS:
        from engine.service.points_return import return_points_to_lots

        return_points_to_lots(scope, leg)
    else:
        balances.credit_available(scope.connection, scope.user_id, asset, leg.units)
    if asset is Asset.CASH:
        scope.posting.move(
            system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
            user_entry(scope.user_id, asset, leg.value),
        )
        return
    scope.posting.move(
        system_entry(merchant_payable(scope.merchant_id), Asset.CASH, leg.value),
        system_entry(_FUNDING[asset], Asset.CASH, leg.value),
    )
    scope.posting.move(
        system_entry(_REDEEMED[asset], asset, leg.units),
        user_entry(scope.user_id, asset, leg.units),
    )


def settle(scope: LegScope, leg: LegMove) -> None:
    """Capture: ``leg`` (a part of the held value) leaves the user's ``held`` for the merchant."""
    asset = _asset(leg.kind)
    # The balance row first, then the lots: the lock order every use case follows.
    balances.settle_held(scope.connection, scope.user_id, asset, leg.units)
    _pay_merchant(scope, asset, leg, Bucket.HELD)
    if asset is Asset.POINTS:
        from engine.service.points_holds import settle_held_points

        settle_held_points(scope, leg.units)


def release(scope: LegScope, leg: LegMove) -> None:
    """Void, hold expiry, the uncaptured rest of a partial capture: held value returns to the
    user's ``available`` (points to the lots they came from)."""
    asset = _asset(leg.kind)
    if asset is Asset.POINTS:
        from engine.service.points_holds import release_held_points

        release_held_points(scope, leg)
        return
    balances.release(scope.connection, scope.user_id, asset, leg.units)
    scope.posting.move(
        user_entry(scope.user_id, asset, leg.units, Bucket.HELD),
        user_entry(scope.user_id, asset, leg.units, Bucket.AVAILABLE),
    )
