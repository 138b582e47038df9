"""A till redemption (a gift card or a coupon code at the till) recorded as a captured one-leg
charge whose ``charge_id`` is the REDEEM transaction's id, so ``Refund`` accepts it — written
once for both kinds of redemption."""

from __future__ import annotations

from sqlalchemy import Connection

from engine.domain.charge_status import ChargeStatus
from engine.domain.errors import require
from engine.domain.ledger import Posting, TransactionType
from engine.domain.results import Breakdown
from engine.domain.serialization import dumps
from engine.legs import LegMove, LegScope, take_all
from engine.storage.charges import NewCharge, insert_charge, insert_legs
from engine.storage.ledger import append_transaction

__all__ = ["record_till_redemption"]


def record_till_redemption(
    connection: Connection,
    *,
    transaction_id: str,
    user_id: int,
    merchant_id: str,
    kind: str,
    leg: LegMove,
    breakdown: Breakdown,
    now_us: int,
    idempotency_key: str,
    memo: str,
) -> None:
    """Record the redemption as a CAPTURED charge named by its transaction (``breakdown`` says what
    the leg was: a coupon's discount, or a gift card's paid amount), take ``leg`` from the user for
    good, record it captured, and append the REDEEM transaction."""
    paid_amount = breakdown.gift_card_amount
    require(
        leg.value == breakdown.discount + paid_amount,
        "a till redemption's one leg is its whole value",
    )
    insert_charge(
        connection,
        NewCharge(
            charge_id=transaction_id,
            user_id=user_id,
            kind=kind,
            order_id=transaction_id,
            merchant_id=merchant_id,
            amount=leg.value,
            discount=breakdown.discount,
            gift_card_amount=paid_amount,
            authorized_amount=paid_amount,
            captured_amount=paid_amount,
            status=ChargeStatus.CAPTURED,
            transaction_id=transaction_id,
            breakdown=dumps(breakdown),
            created_at_us=now_us,
        ),
    )
    posting = Posting()
    scope = LegScope(connection, user_id, transaction_id, merchant_id, now_us, posting)
    take_all(scope, [leg], hold=False)
    insert_legs(
        connection,
        transaction_id,
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
        transaction_id=transaction_id,
        user_id=user_id,
        transaction_type=TransactionType.REDEEM,
        entries=posting.entries(),
        now_us=now_us,
        idempotency_key=idempotency_key,
        charge_id=transaction_id,
        memo=memo,
    )
