"""The expiry job's tasks: a feature with something that expires appends an
:class:`~engine.jobs.base.ExpireTask` to :data:`EXPIRE_TASKS`; ``python -m engine.jobs expire``
and the server's schedule run them all, in this order.
"""

from __future__ import annotations

from engine.jobs.base import AmountUnit, ExpireTask
from engine.jobs.expire import (
    expire_gift_cards,
    expire_holds,
    expire_points_lots,
    preview_gift_cards,
    preview_holds,
    preview_points_lots,
)
from engine.service.coupon_expiry import expire_coupons_batch, preview_coupons

#: Holds first: releasing a hold gives value back to lots and cards before those are looked at.
EXPIRE_TASKS: list[ExpireTask] = [
    ExpireTask("holds", expire_holds, preview_holds, AmountUnit.FEN),
    ExpireTask("points_lots", expire_points_lots, preview_points_lots, AmountUnit.POINTS),
    ExpireTask("gift_cards", expire_gift_cards, preview_gift_cards, AmountUnit.FEN),
    # After holds, whose release may hand a coupon back (ACTIVATED) just past its validity.
    ExpireTask("coupons", expire_coupons_batch, preview_coupons),
]
