"""Amounts as people type them (``150.00`` yuan) <-> int minor units (fen), exactly.

The conversion runs through :mod:`decimal` with the ``Inexact`` and ``Rounded`` traps set, so a
value that is not a whole number of fen (``1.005``) is refused instead of being rounded.
"""

from __future__ import annotations

import decimal
import re

__all__ = [
    "MAX_AMOUNT_CHARS",
    "MAX_AMOUNT_FEN",
    "MINOR_DIGITS",
    "MINOR_PER_MAJOR",
    "AmountError",
    "format_fen",
    "parse_amount",
    "parse_units",
    "yuan_text",
]

#: One request moves at most 10^13 fen (the engine's per-request limit, docs/api.md).
MAX_AMOUNT_FEN = 10**13
#: Units per major unit (fen per yuan; one currency per deployment).
MINOR_PER_MAJOR = 100
MINOR_DIGITS = 2
#: Longest text accepted as an amount (10^13 fen is 14 digits plus decimals).
MAX_AMOUNT_CHARS = 32

_DECIMAL = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_INTEGER = re.compile(r"^[0-9]+$")


class AmountError(ValueError):
    """A typed amount that is not an exact, positive, bounded number of fen."""


def parse_amount(text: str, *, allow_zero: bool = False, limit: int = MAX_AMOUNT_FEN) -> int:
    """``"150.00"`` -> ``15000``. Refuses negatives, non-numbers, fractions of a fen and amounts
    above ``limit`` fen, each with a message a cashier can act on."""
    raw = text.strip()
    if raw.startswith("-"):
        raise AmountError(f"{text!r} is negative; amounts must be positive, such as 150.00")
    if len(raw) > MAX_AMOUNT_CHARS or not _DECIMAL.match(raw):
        raise AmountError(f"{text!r} is not an amount; type yuan with at most 2 decimals, such as 150.00")
    context = decimal.Context(prec=64, traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation])
    try:
        value = context.multiply(decimal.Decimal(raw), decimal.Decimal(MINOR_PER_MAJOR))
    except decimal.DecimalException as error:  # pragma: no cover - the pattern excludes these
        raise AmountError(f"{text!r} is not an amount") from error
    if value != value.to_integral_value():
        raise AmountError(
            f"{text!r} has a fraction of a fen; amounts have at most {MINOR_DIGITS} decimals, such as 150.00"
        )
    fen = int(value)
    if fen == 0 and not allow_zero:
        raise AmountError(f"{text!r} is zero; the amount must be greater than 0.00")
    if fen > limit:
        raise AmountError(f"{text!r} is above the limit of {format_fen(limit)} per request")
    return fen


def parse_units(text: str, *, limit: int = MAX_AMOUNT_FEN) -> int:
    """A whole count of points or coins (``"500"``), zero allowed, at most ``limit``."""
    raw = text.strip()
    if raw.startswith("-"):
        raise AmountError(f"{text!r} is negative; counts must be 0 or more")
    if len(raw) > MAX_AMOUNT_CHARS or not _INTEGER.match(raw):
        raise AmountError(f"{text!r} is not a whole number of points or coins")
    units = int(raw)
    if units > limit:
        raise AmountError(f"{text!r} is above the limit of {limit} per request")
    return units


def format_fen(fen: int, *, grouping: bool = True) -> str:
    """``15000`` -> ``"150.00"`` (exact; negative values keep their sign). ``grouping`` puts
    thousands separators in (``"1,234.56"``, for people); without it the text parses back with
    :func:`parse_amount` (``"1234.56"``, for JSON)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), MINOR_PER_MAJOR)
    separator = "," if grouping else ""
    return f"{sign}{whole:{separator}}.{part:0{MINOR_DIGITS}d}"


def yuan_text(fen: int) -> str:
    """``123456`` -> ``"1234.56"``: the machine-readable yuan string (``--json``'s ``*_yuan``)."""
    return format_fen(fen, grouping=False)
