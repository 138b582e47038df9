"""Input checks shared by every use case: ids, keys, users, text fields."""

from __future__ import annotations

import re

from engine.domain.errors import invalid_argument

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Free-text references (order ids, merchant ids, reasons) are bounded like everything else.
MAX_REFERENCE_CHARS = 128
MAX_TEXT_CHARS = 512
MAX_ITEMS_PER_CHARGE = 200
MAX_COUPONS_PER_CHARGE = 5
MAX_GIFT_CARDS_PER_CHARGE = 5
MAX_INT64 = 2**63 - 1


def require_idempotency_key(key: str) -> str:
    if not key:
        raise invalid_argument("idempotency_key", "is required")
    if len(key) > 128:
        raise invalid_argument("idempotency_key", "must be at most 128 characters")
    if IDEMPOTENCY_KEY_PATTERN.match(key) is None:
        raise invalid_argument("idempotency_key", "may contain only [A-Za-z0-9._:-]")
    return key


def require_user_id(user_id: int, field: str = "user_id") -> int:
    if user_id <= 0:
        raise invalid_argument(field, "must be greater than zero")
    return user_id


def require_reference(field: str, value: str, *, required: bool) -> str:
    if required and not value:
        raise invalid_argument(field, "is required")
    if len(value) > MAX_REFERENCE_CHARS:
        raise invalid_argument(field, f"must be at most {MAX_REFERENCE_CHARS} characters")
    return value


def require_text(field: str, value: str) -> str:
    if len(value) > MAX_TEXT_CHARS:
        raise invalid_argument(field, f"must be at most {MAX_TEXT_CHARS} characters")
    return value
