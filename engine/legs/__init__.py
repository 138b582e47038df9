"""The leg protocol: how each kind of charge leg moves value (take, settle, release, give back).

Where it sits: a layer between :mod:`engine.service` and :mod:`engine.storage`. It imports only
the domain and storage; the use cases (Charge, Capture, Void, hold expiry, Refund, the till
redemptions) import it. It is not under ``service`` because a handler has no use case of its
own — no idempotency, no transaction, no context — and keeping it below ``service`` lets the
import graph forbid a handler from reaching back into a use case (the cycles the old
``service/legs.py`` hid behind function-level imports).

* :mod:`engine.legs.protocol`: :class:`LegMove`, :class:`LegScope` and the :class:`LegHandler`
  Protocol with its four movements.
* :mod:`engine.legs.wallet`: CASH and COINS balances; :mod:`engine.legs.points`: POINTS with lots;
  :mod:`engine.legs.gift_card`: the user's gift cards; :mod:`engine.legs.coupon`: coupons.
* :mod:`engine.legs.registry`: :func:`handler_for` (by :class:`~engine.domain.leg_kind.LegKind`)
  and the use-case-facing loops that move a whole charge's legs in the lock order.
"""

from __future__ import annotations

from engine.legs.protocol import LegHandler, LegMove, LegScope
from engine.legs.registry import give_back_all, handler_for, resolve_all, take_all

__all__ = ["LegHandler", "LegMove", "LegScope", "give_back_all", "handler_for", "resolve_all", "take_all"]
