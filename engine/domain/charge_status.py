"""The life of a charge: its statuses (CONTRACT §2) as an enum.

The values equal the strings stored in ``charges.status`` and the proto's
``CHARGE_STATUS_<value>`` names.
"""

from __future__ import annotations

import enum

__all__ = ["ChargeStatus"]


class ChargeStatus(enum.StrEnum):
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
