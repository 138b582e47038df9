"""A till redemption (a gift card or a coupon code at the till) recorded as a captured one-leg
charge whose ``charge_id`` is the REDEEM transaction's id, so ``Refund`` accepts it — written
once for both kinds of redemption."""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.charge_status import ChargeStatus
from engine.domain.errors import require
from engine.domain.ledger import Posting, TransactionType
from engine.legs import LegMove, LegScope, take_all
from engine.storage.charges import NewCharge, insert_charge, insert_legs
from engine.storage.ledger import append_transaction

__all__ = ["record_till_redemption"]


def record_till_redemption(
    connection: Connection,
    charge: NewCharge,
    leg: LegMove,
    *,
    idempotency_key: str,
    memo: str,
) -> None:
    """Insert ``charge`` (CAPTURED, its id the transaction id), take ``leg`` from the user for
    good, record it captured, and append the REDEEM transaction."""
    require(
        charge.charge_id == charge.transaction_id and charge.status is ChargeStatus.CAPTURED,
        "a till redemption is a captured charge named by its transaction",
    )
    insert_charge(connection, charge)
    posting = Posting()
    scope = LegScope(
        connection, charge.user_id, charge.transaction_id, charge.merchant_id, charge.created_at_us, posting
    )
    take_all(scope, [leg], hold=False)
    insert_legs(
        connection,
        charge.transaction_id,
        [
            {
                "leg_index": 0,
                "kind": leg.kind.value,
                "instrument": leg.instrument,
                "value": leg.value,
                "units": leg.units,
                "captured_value": leg.value,
                "captured_units": leg.units,
            }
        ],
    )
    append_transaction(
        connection,
        transaction_id=charge.transaction_id,
        user_id=charge.user_id,
        transaction_type=TransactionType.REDEEM,
        entries=posting.entries(),
        now_us=charge.created_at_us,
        idempotency_key=idempotency_key,
        charge_id=charge.transaction_id,
        memo=memo,
    )
