"""Ids and codes that carry their virtual shard, so a call with only the id routes without a lookup.

* Ids (charges, refunds, transactions, coupons, lots, templates): ``<prefix>_<S><T><R>`` in
  lowercase Crockford base32 — ``S`` 2 symbols of virtual shard, ``T`` 10 symbols of
  milliseconds since the epoch (so ids sort by creation time), ``R`` 10 random symbols (50 bits).
* Codes a person types (gift cards, coupon codes): 13 Crockford base32 symbols — 2 of virtual
  shard, 11 random (55 bits) — then a Crockford check symbol (mod 37), grouped by four:
  ``7XK9-B2T4-Q8MZ-3P``.
"""

from __future__ import annotations

import os
import re
import secrets
import threading

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Crockford's check symbols: the 32 symbols then five extra ones for values 32..36.
CHECK_ALPHABET = ALPHABET + "*~$=U"
_DECODE = {symbol: value for value, symbol in enumerate(ALPHABET)}
_DECODE.update({"O": 0, "I": 1, "L": 1})
_CHECK_CONFUSABLES = {"O": "0", "I": "1", "L": "1"}

#: Two base32 symbols hold the virtual shard, so at most 1024 virtual shards.
MAX_VIRTUAL_SHARDS = 1024
_SHARD_SYMBOLS = 2
_TIME_SYMBOLS = 10
_RANDOM_SYMBOLS = 10
_CODE_RANDOM_SYMBOLS = 11
_ID_PATTERN = re.compile(r"^([a-z]{2,4})_([0-9a-hjkmnp-tv-z]{22})$")


def _encode(value: int, width: int) -> str:
    symbols = []
    for _ in range(width):
        symbols.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(symbols))


def _decode(text: str) -> int:
    value = 0
    for symbol in text:
        value = (value << 5) | _DECODE[symbol]
    return value


#: Random bytes fetched from the OS at once per thread: one ``os.urandom`` system call per id cost
#: more than the rest of the id (a campaign chunk makes thousands of ids).
_RANDOM_POOL_BYTES = 4096
_RANDOM_ID_BYTES = 7  # 56 bits, of which the id keeps 50
_pool = threading.local()


def _forget_pool_after_fork() -> None:
    # A forked child must never hand out the bytes its parent's pool still holds: two processes
    # would mint the same ids.
    global _pool
    _pool = threading.local()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _random_id_bits() -> int:
    """50 random bits from the OS's CSPRNG, through this thread's pool of random bytes."""
    buffer: bytes = getattr(_pool, "buffer", b"")
    offset: int = getattr(_pool, "offset", 0)
    if offset + _RANDOM_ID_BYTES > len(buffer):
        buffer, offset = os.urandom(_RANDOM_POOL_BYTES), 0
        _pool.buffer = buffer
    _pool.offset = offset + _RANDOM_ID_BYTES
    return int.from_bytes(buffer[offset : offset + _RANDOM_ID_BYTES], "big") >> (
        8 * _RANDOM_ID_BYTES - 5 * _RANDOM_SYMBOLS
    )


def new_id(prefix: str, virtual_shard: int, now_ms: int) -> str:
    """A fresh id for ``prefix`` (e.g. ``ch``) on ``virtual_shard``."""
    shard = _encode(virtual_shard, _SHARD_SYMBOLS)
    time_part = _encode(now_ms, _TIME_SYMBOLS)
    random_part = _encode(_random_id_bits(), _RANDOM_SYMBOLS)
    return f"{prefix}_{shard}{time_part}{random_part}".lower()


def new_transaction_id(virtual_shard: int, now_us: int) -> str:
    """A fresh ledger transaction id on ``virtual_shard`` (``now_us``: the transaction's clock)."""
    return new_id("tx", virtual_shard, now_us // 1000)


def id_virtual_shard(identifier: str) -> int | None:
    """The virtual shard an id carries, or ``None`` when it is not one of ours."""
    match = _ID_PATTERN.match(identifier)
    if match is None:
        return None
    return _decode(match.group(2)[:_SHARD_SYMBOLS].upper())


def id_prefix(identifier: str) -> str | None:
    match = _ID_PATTERN.match(identifier)
    return None if match is None else match.group(1)


def _check_symbol(value: int) -> str:
    return CHECK_ALPHABET[value % 37]


def new_code(virtual_shard: int) -> str:
    """A fresh human-typed code (gift card or coupon) carrying ``virtual_shard``."""
    random_bits = 5 * _CODE_RANDOM_SYMBOLS
    value = (virtual_shard << random_bits) | secrets.randbits(random_bits)
    body = _encode(value, _SHARD_SYMBOLS + _CODE_RANDOM_SYMBOLS) + _check_symbol(value)
    return "-".join(body[index : index + 4] for index in range(0, len(body), 4))


def normalize_code(code: str) -> str | None:
    """The canonical form of a typed code, or ``None`` if it is malformed or fails its check.

    Case, hyphens and spaces do not matter; ``O``/``I``/``L`` read as ``0``/``1``/``1``.
    """
    compact = code.replace("-", "").replace(" ", "").upper()
    if len(compact) != _SHARD_SYMBOLS + _CODE_RANDOM_SYMBOLS + 1:
        return None
    body, check = compact[:-1], compact[-1]
    if any(symbol not in _DECODE for symbol in body):
        return None
    value = _decode(body)
    # The check symbol reads confusables like the body does (Crockford): a check of 0 or 1 typed
    # as O or I/L is the same code.
    check = _CHECK_CONFUSABLES.get(check, check)
    if check != _check_symbol(value):
        return None
    canonical = _encode(value, len(body)) + check
    return "-".join(canonical[index : index + 4] for index in range(0, len(canonical), 4))


def code_virtual_shard(code: str) -> int | None:
    """The virtual shard a code carries, or ``None`` when the code is malformed."""
    canonical = normalize_code(code)
    if canonical is None:
        return None
    compact = canonical.replace("-", "")
    return _decode(compact[:_SHARD_SYMBOLS])
