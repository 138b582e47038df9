"""What the two command lines (``coffer`` admin CLI, ``coffer-pos`` till) share: exit codes, typed
arguments, the connection and credential options, ``--json`` with both units, and refusals worded
in yuan.

Amounts cross this edge once each way: typed yuan become integer fen in the argument types
(:mod:`clients.money`), and fen from the engine — in answers and in ``ErrorInfo`` metadata —
become yuan only when shown. In ``--json`` every money field ``x`` is ``x_fen`` (an integer) and
``x_yuan`` (a string such as ``"30.00"``) side by side; counts of points stay plain integers.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from clients._retry import RetryPolicy
from clients._transport import DEFAULT_TARGET, TlsFiles
from clients.errors import CofferError
from clients.money import AmountError, format_fen, parse_amount, parse_units, yuan_text
from clients.order_client import OrderClient
from coffer.v1 import common_pb2

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "FEN_FIELDS",
    "add_charge_options",
    "add_connection_options",
    "amount_arg",
    "bounded_int",
    "command_line",
    "connect",
    "describe_refusal",
    "message_json",
    "refusal_json",
    "units_arg",
    "user_arg",
]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
TARGET_ENV = "COFFER_TARGET"
TOKEN_ENV = "COFFER_TOKEN"
#: Attempts per call a command line accepts (the client's own bound is higher).
MAX_ATTEMPTS = 20


# -- argument types: exact amounts, or a clear message and exit code 2 --------------------------


def amount_arg(text: str) -> int:
    """Yuan as typed (``150.00``) -> fen; argparse turns the refusal into exit code 2."""
    try:
        return parse_amount(text)
    except AmountError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def units_arg(text: str) -> int:
    try:
        return parse_units(text)
    except AmountError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def user_arg(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text.strip()) or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r} is not a user id (a positive integer)")
    return int(text)


# -- connection and credentials -------------------------------------------------------------------


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number within ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def command_line(
    prog: str, description: str, epilog: str, *, timeout_s: float, attempts: int
) -> argparse.ArgumentParser:
    """A parser with the options every command line has: connection, credentials, ``--attempts``
    and ``--json``."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    add_connection_options(parser, timeout_s=timeout_s)
    parser.add_argument(
        "--attempts",
        type=bounded_int(1, MAX_ATTEMPTS),
        default=attempts,
        help=f"attempts per call, 1-{MAX_ATTEMPTS} (default {attempts})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per answer instead of tables (money as x_fen integers and x_yuan strings)",
    )
    return parser


def add_charge_options(sub: argparse.ArgumentParser) -> None:
    """What a charge names besides its user and merchant: the order, its total, and the legs."""
    sub.add_argument("--order", required=True, help="order id")
    sub.add_argument("--amount", type=amount_arg, required=True, help="order total in yuan, e.g. 150.00")
    sub.add_argument("--points", type=units_arg, default=0, help="points to spend")
    sub.add_argument("--coins", type=units_arg, default=0, help="coins to spend")
    sub.add_argument("--gift-card", action="append", default=[], help="gift-card code (repeatable)")
    sub.add_argument("--coupon", action="append", default=[], help="coupon id (repeatable)")


def add_connection_options(parser: argparse.ArgumentParser, *, timeout_s: float) -> None:
    """``--target``, ``--timeout`` and the credentials of the security issue (TLS files, token)."""
    parser.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"engine host:port (default ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"deadline per attempt, s (default {timeout_s:g})"
    )
    parser.add_argument("--ca", type=Path, default=None, help="CA bundle (PEM): connect over TLS")
    parser.add_argument("--cert", type=Path, default=None, help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key-file", type=Path, default=None, help="client private key (PEM) for mutual TLS")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"bearer token sent as 'authorization: Bearer TOKEN' (default ${TOKEN_ENV})",
    )


def connect(args: argparse.Namespace, retry: RetryPolicy) -> OrderClient:
    """The client the options describe. ValueError / OSError name a bad option (exit code 2)."""
    if args.timeout <= 0:
        raise ValueError("--timeout must be positive")
    tls: TlsFiles | None = None
    if args.ca is not None:
        tls = TlsFiles(args.ca, args.cert, args.key_file)
    elif args.cert is not None or args.key_file is not None:
        raise ValueError("--cert and --key-file need --ca (they only make sense over TLS)")
    return OrderClient(args.target, tls=tls, token=args.token, timeout=args.timeout, retry=retry)


# -- --json: fen integers and yuan strings side by side --------------------------------------------

#: Money fields (fen) per message. Balance and LedgerEntry amounts are fen unless their asset is
#: POINTS (a count of points), see :func:`_is_money`.
FEN_FIELDS: Mapping[str, frozenset[str]] = {
    "coffer.v1.Breakdown": frozenset(
        {"discount", "points_value", "coins_used", "gift_card_amount", "cash_amount"}
    ),
    "coffer.v1.Charge": frozenset(
        {"amount", "authorized_amount", "captured_amount", "refunded_amount", "released_amount"}
    ),
    "coffer.v1.GiftCard": frozenset({"balance", "held"}),
    "coffer.v1.GiftCardUse": frozenset({"amount"}),
    "coffer.v1.CouponUse": frozenset({"discount"}),
    "coffer.v1.RefundRecord": frozenset({"amount"}),
    "coffer.v1.LineItem": frozenset({"unit_price"}),
    "coffer.v1.RedeemResponse": frozenset({"discount", "amount"}),
    "coffer.v1.Balance": frozenset({"available", "held"}),
    "coffer.v1.LedgerEntry": frozenset({"amount"}),
}
_COUNTED_ASSET = common_pb2.Asset.Name(common_pb2.ASSET_POINTS)
_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _is_money(descriptor: Any, name: str, body: Mapping[str, Any]) -> bool:
    if name not in FEN_FIELDS.get(descriptor.full_name, frozenset()):
        return False
    return body.get("asset") != _COUNTED_ASSET


def _convert(descriptor: Any, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            out[key] = value
        elif field.message_type is not None and field.message_type.full_name.startswith("coffer."):
            nested = field.message_type
            out[key] = (
                [_convert(nested, item) for item in value]
                if isinstance(value, list)
                else _convert(nested, value)
            )
        elif field.type in _INTEGER_TYPES:
            # The proto JSON mapping writes 64-bit integers as strings; here they are numbers.
            number: Any = [int(item) for item in value] if isinstance(value, list) else int(value)
            if _is_money(descriptor, key, body) and isinstance(number, int):
                out[f"{key}_fen"] = number
                out[f"{key}_yuan"] = yuan_text(number)
            else:
                out[key] = number
        else:
            out[key] = value
    return out


def message_json(message: Message) -> dict[str, Any]:
    """A response as a JSON-ready dict: proto field names, enums by name, every field present,
    money as ``x_fen`` + ``x_yuan``."""
    body = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _convert(message.DESCRIPTOR, body)


# -- refusals in words, amounts in yuan --------------------------------------------------------------

#: ErrorInfo metadata keys that carry fen (``needed`` only for a money asset, see below).
_FEN_METADATA = ("needed", "captured", "refunded", "authorized", "cap_fen", "limit")
_INSTRUMENT_GIFT_CARD = "GIFT_CARD"
#: ErrorInfo metadata names an asset without the enum's prefix ("POINTS", not "ASSET_POINTS").
_METADATA_POINTS = common_pb2.Asset.Name(common_pb2.ASSET_POINTS).removeprefix("ASSET_")
_METADATA_COINS = common_pb2.Asset.Name(common_pb2.ASSET_COINS).removeprefix("ASSET_")


def _fen(metadata: Mapping[str, str], key: str) -> int | None:
    raw = metadata.get(key, "")
    return int(raw) if re.fullmatch(r"-?[0-9]{1,20}", raw) else None


def _yuan(metadata: Mapping[str, str], key: str) -> str:
    value = _fen(metadata, key)
    return "?" if value is None else format_fen(value)


def _is_card(metadata: Mapping[str, str]) -> bool:
    # Older engines name no instrument but always put the card's code in a card shortfall.
    return metadata.get("instrument") == _INSTRUMENT_GIFT_CARD or "code" in metadata


def _insufficient(error: CofferError, requested_fen: int | None) -> str:
    metadata = error.metadata
    if _is_card(metadata):
        return f"gift card {metadata.get('code', '?')} holds less than {_yuan(metadata, 'needed')}"
    asset = metadata.get("asset", "")
    if asset == _METADATA_POINTS:
        return f"fewer than {metadata.get('needed', '?')} points are available"
    if asset == _METADATA_COINS:
        return f"fewer than {metadata.get('needed', '?')} coins are available"
    return f"the cash balance holds less than the {_yuan(metadata, 'needed')} it would have to pay"


def _refund_exceeds(error: CofferError, requested_fen: int | None) -> str:
    metadata = error.metadata
    if "sku" in metadata:  # an item refund: quantities, no money in the engine's words
        return error.message
    asked = "the amount" if requested_fen is None else format_fen(requested_fen)
    refunded = _fen(metadata, "refunded") or 0
    already = f" ({format_fen(refunded)} already refunded)" if refunded else ""
    return f"refunding {asked} would pass the {_yuan(metadata, 'captured')} captured{already}"


def _capture_exceeds(error: CofferError, requested_fen: int | None) -> str:
    asked = "the amount" if requested_fen is None else format_fen(requested_fen)
    return f"capturing {asked} would pass the {_yuan(error.metadata, 'authorized')} authorized"


def _points_limit(error: CofferError, requested_fen: int | None) -> str:
    return f"points worth more than {_yuan(error.metadata, 'cap_fen')} pass the per-order cap"


def _amount_limit(error: CofferError, requested_fen: int | None) -> str:
    where = error.metadata.get("field") or error.metadata.get("asset") or "the amount"
    return f"{where} would pass the limit of {_yuan(error.metadata, 'limit')}"


def _min_spend(error: CofferError, requested_fen: int | None) -> str:
    coupon = error.metadata.get("coupon_id")
    return ("coupon " + coupon + ": " if coupon else "") + "the order does not reach the minimum spend"


#: Reasons whose engine message carries fen: worded here from the metadata instead. Every other
#: reason's message names ids, states or counts only, and is shown as the engine wrote it.
_WORDING: Mapping[int, Callable[[CofferError, int | None], str]] = {
    common_pb2.INSUFFICIENT_FUNDS: _insufficient,
    common_pb2.REFUND_EXCEEDS_CAPTURED: _refund_exceeds,
    common_pb2.CAPTURE_EXCEEDS_AUTHORIZED: _capture_exceeds,
    common_pb2.POINTS_LIMIT_EXCEEDED: _points_limit,
    common_pb2.AMOUNT_LIMIT_EXCEEDED: _amount_limit,
    common_pb2.MIN_SPEND_NOT_MET: _min_spend,
}


def describe_refusal(error: CofferError, *, requested_fen: int | None = None) -> str:
    """One line: the reason in words, then what happened, amounts in yuan. ``requested_fen`` is
    the amount the caller asked for (the engine's metadata carries only what it holds)."""
    words = error.reason.lower().replace("_", " ")
    wording = _WORDING.get(error.error_reason)
    detail = wording(error, requested_fen) if wording is not None else error.message
    return f"{words}: {detail}" if detail else words


def _metadata_amounts(error: CofferError) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    counted = error.metadata.get("asset") in (_METADATA_POINTS, _METADATA_COINS) and not _is_card(
        error.metadata
    )
    for key in _FEN_METADATA:
        value = _fen(error.metadata, key)
        if value is None or (key == "needed" and counted):
            continue
        name = key.removesuffix("_fen")
        amounts[f"{name}_fen"] = value
        amounts[f"{name}_yuan"] = yuan_text(value)
    return amounts


def refusal_json(command: str, error: CofferError, *, requested_fen: int | None = None) -> dict[str, Any]:
    """A refusal for ``--json``: reason, code, the engine's message, the one-line description
    in yuan, the raw metadata and its money values in both units."""
    return {
        "command": command,
        "error": {
            "reason": error.reason,
            "code": error.code.name,
            "message": error.message,
            "description": describe_refusal(error, requested_fen=requested_fen),
        },
        "metadata": error.metadata,
        "amounts": _metadata_amounts(error),
    }
