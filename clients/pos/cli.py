"""``coffer-pos`` / ``python -m clients.pos``: the cashier's till against the engine.

    coffer-pos --merchant m-17 charge --user 42 --order A-1001 --amount 150.00 --points 500
    coffer-pos balance --card 7XK9-B2T4-Q8MZ-3P

Every money command is journaled (see :mod:`clients.pos.journal`) before it is sent; at start-up,
unfinished entries are re-sent with their original idempotency key, then the command runs.

Exit codes: 0 done; 1 refused by the engine (reason printed); 2 bad usage or amount; 3 engine
unreachable (the request stays in the journal and is re-sent on the next start); 4 the journal
is in use by another coffer-pos.

Test hook: with ``COFFER_POS_CRASH_AFTER_SEND=1`` in the environment the process SIGKILLs itself
right after the engine answered and before the answer is recorded in the journal — the exact
window the journal exists for. Used by tests/e2e/test_pos_crash.py; never set it on a real till.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from clients.errors import REASON_CLASSES, CofferError
from clients.money import AmountError, format_fen, parse_amount, parse_units
from clients.order_client import (
    RPCS,
    OrderClient,
    RetryPolicy,
    build_charge_request,
    build_redeem_coupon_request,
    build_redeem_gift_card_request,
    build_refund_request,
    new_idempotency_key,
)
from clients.pos.journal import DONE, PENDING, Entry, Journal, JournalBusy, default_path
from coffer.v1 import common_pb2, engine_pb2

CRASH_HOOK = "COFFER_POS_CRASH_AFTER_SEND"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_BUSY = 0, 1, 2, 3, 4
DEFAULT_TIMEOUT_SECONDS = 10.0


class Unreachable(Exception):
    """The engine did not answer after the retries; the journal entry stays pending."""

    def __init__(self, error: CofferError) -> None:
        super().__init__(str(error))
        self.error = error


# -- argument types: exact amounts, or a clear message and exit code 2 --------------------------


def amount_arg(text: str) -> int:
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


def _terminal_id(raw: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:32]
    return cleaned or "till"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coffer-pos",
        description="Cashier till for coffer: balance checks, redemptions, charges and refunds.",
        epilog="Amounts are yuan with at most 2 decimals (150.00). Exit codes: 0 done, 1 refused, "
        "2 bad input, 3 engine unreachable (kept in the journal), 4 journal busy.",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("COFFER_TARGET", "127.0.0.1:50051"),
        help="engine host:port (default $COFFER_TARGET or 127.0.0.1:50051)",
    )
    parser.add_argument(
        "--journal",
        default=None,
        help="journal file (default $COFFER_POS_JOURNAL or ~/.coffer-pos/journal.db)",
    )
    parser.add_argument(
        "--terminal",
        default=os.environ.get("COFFER_POS_TERMINAL", socket.gethostname()),
        help="this till's id, part of every idempotency key (default $COFFER_POS_TERMINAL or hostname)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="deadline per attempt (s)"
    )
    parser.add_argument("--attempts", type=int, default=5, help="attempts per call (1-20)")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON instead of tables")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    balance = commands.add_parser("balance", help="gift-card balance check")
    balance.add_argument("--card", required=True, help="gift-card code")

    merchant_default = os.environ.get("COFFER_POS_MERCHANT")

    def merchant(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--merchant",
            required=merchant_default is None,
            default=merchant_default,
            help="merchant id (default $COFFER_POS_MERCHANT)",
        )

    coupon = commands.add_parser("redeem-coupon", help="redeem a coupon code against an order")
    coupon.add_argument("--code", required=True, help="coupon code")
    coupon.add_argument("--amount", type=amount_arg, required=True, help="order amount, e.g. 150.00")
    merchant(coupon)

    card = commands.add_parser("redeem-card", help="take an amount from a gift card (all or nothing)")
    card.add_argument("--code", required=True, help="gift-card code")
    card.add_argument("--amount", type=amount_arg, required=True, help="amount, e.g. 150.00")
    merchant(card)

    charge = commands.add_parser("charge", help="charge a user's wallet for an order")
    charge.add_argument("--user", type=user_arg, required=True)
    charge.add_argument("--order", required=True, help="order id")
    charge.add_argument("--amount", type=amount_arg, required=True, help="order total, e.g. 150.00")
    charge.add_argument("--points", type=units_arg, default=0, help="points to spend")
    charge.add_argument("--coins", type=units_arg, default=0, help="coins to spend")
    charge.add_argument("--gift-card", action="append", default=[], help="gift-card code (repeatable)")
    charge.add_argument("--coupon", action="append", default=[], help="coupon id (repeatable)")
    merchant(charge)

    refund = commands.add_parser("refund", help="refund (part of) a charge or till redemption")
    refund.add_argument("--charge", required=True, help="charge id or redemption transaction id")
    refund.add_argument("--amount", type=amount_arg, required=True, help="amount, e.g. 20.00")
    refund.add_argument("--reason", default="", help="refund reason")

    wallet = commands.add_parser("wallet", help="a user's balances, points, coupons and gift cards")
    wallet.add_argument("--user", type=user_arg, required=True)

    journal = commands.add_parser("journal", help="list this till's journal (no engine needed)")
    journal.add_argument("--limit", type=int, default=20)
    return parser


# -- sending through the journal ----------------------------------------------------------------


def _definitive(error: CofferError) -> bool:
    """An engine refusal with a contract reason: the request left no trace and is finished.

    Anything else (no answer, a deadline, a transport or internal error) may or may not have
    been applied, so the entry stays pending and is re-sent with its key."""
    return not error.retryable and error.reason in REASON_CLASSES


def deliver(journal: Journal, client: OrderClient, seq: int, rpc: str, request: Message) -> Any:
    journal.attempt(seq)
    try:
        response = client.send(rpc, request)
    except CofferError as error:
        if _definitive(error):
            journal.refuse(seq, error.reason, error.message)
            raise
        raise Unreachable(error) from None
    if os.environ.get(CRASH_HOOK) == "1":
        # Test hook (see the module docstring): die between the answer and its record.
        os.kill(os.getpid(), signal.SIGKILL)
    journal.finish(seq, response.SerializeToString())
    return response


def send_journaled(
    journal: Journal, client: OrderClient, *, command: str, summary: str, rpc: str, request: Message
) -> Any:
    key = getattr(request, "idempotency_key", "")
    if not key:
        raise ValueError("a journaled request needs its idempotency key")
    seq = journal.record(
        idempotency_key=key, rpc=rpc, command=command, summary=summary, request=request.SerializeToString()
    )
    return deliver(journal, client, seq, rpc, request)


def recover(journal: Journal, client: OrderClient, out: Output) -> int:
    """Re-send every pending entry with its own key, oldest first. Returns an exit code."""
    pending = journal.pending()
    if not pending:
        return EXIT_OK
    out.note(f"re-sending {len(pending)} unfinished request(s) from the journal {journal.path}")
    for entry in pending:
        request = RPCS[entry.rpc][1].FromString(entry.request)
        try:
            response = deliver(journal, client, entry.seq, entry.rpc, request)
        except Unreachable as unreachable:
            out.error(
                f"engine unreachable ({unreachable.error.reason}); {len(journal.pending())} request(s) "
                "stay in the journal and will be re-sent on the next start"
            )
            return EXIT_UNREACHABLE
        except CofferError as error:
            out.note(f"journal #{entry.seq} {entry.command} ({entry.summary}) refused: {error.reason}")
            continue
        replayed = bool(getattr(response, "replayed", False))
        out.note(
            f"journal #{entry.seq} {entry.command} ({entry.summary}) key {entry.idempotency_key}: "
            + ("already applied, answer recovered" if replayed else "applied now")
        )
        out.response(entry.command, response, recovered=True)
    return EXIT_OK


# -- output ---------------------------------------------------------------------------------------


def _time(value: Any) -> str:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return "-"
    moment: datetime = value.ToDatetime(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _enum(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


class Output:
    """Tables on a terminal (rich), or one JSON object per answer with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    def note(self, text: str) -> None:
        self.err.print(f"[cyan]{text}[/cyan]")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]{text}[/bold red]")

    def response(self, command: str, message: Message, *, recovered: bool = False) -> None:
        if self.as_json:
            body = json_format.MessageToDict(
                message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            print(json.dumps({"command": command, "recovered": recovered, "response": body}), flush=True)
            return
        render = RENDERERS.get(command)
        if render is None:
            self.console.print(message)
            return
        for table in render(message):
            self.console.print(table)

    def refused(self, command: str, error: CofferError) -> None:
        if self.as_json:
            payload = {
                "command": command,
                "error": {"reason": error.reason, "code": error.code.name, "message": error.message},
                "metadata": error.metadata,
            }
            print(json.dumps(payload), flush=True)
            return
        detail = ", ".join(f"{key}={value}" for key, value in sorted(error.metadata.items()))
        self.error(f"refused: {error.reason}" + (f" ({detail})" if detail else ""))
        if error.message:
            self.err.print(error.message)


def _kv_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _breakdown_rows(breakdown: common_pb2.Breakdown) -> list[tuple[str, str]]:
    rows = [("discount", format_fen(breakdown.discount))]
    if breakdown.points_used:
        rows.append(("points", f"{breakdown.points_used} (= {format_fen(breakdown.points_value)})"))
    if breakdown.coins_used:
        rows.append(("coins", format_fen(breakdown.coins_used)))
    for use in breakdown.gift_cards:
        rows.append((f"gift card {use.code}", format_fen(use.amount)))
    if breakdown.gift_card_amount and not breakdown.gift_cards:
        rows.append(("gift cards", format_fen(breakdown.gift_card_amount)))
    rows.append(("cash balance", format_fen(breakdown.cash_amount)))
    return rows


def _render_charge(response: engine_pb2.ChargeResponse) -> list[Table]:
    rows = [
        ("charge", response.charge_id),
        ("status", _enum(common_pb2.ChargeStatus, response.status, "CHARGE_STATUS_")),
        *_breakdown_rows(response.breakdown),
        ("replayed", "yes" if response.replayed else "no"),
    ]
    return [_kv_table("Charge", rows), *_render_wallet(response.wallet)]


def _render_refund(response: engine_pb2.RefundResponse) -> list[Table]:
    charge = response.charge
    rows = [
        ("refund", response.refund_id),
        ("charge", charge.charge_id),
        ("charge status", _enum(common_pb2.ChargeStatus, charge.status, "CHARGE_STATUS_")),
        ("refunded in total", format_fen(charge.refunded_amount)),
        ("of captured", format_fen(charge.captured_amount)),
        *[(f"back to {name}", value) for name, value in _breakdown_rows(response.breakdown)[1:]],
        ("replayed", "yes" if response.replayed else "no"),
    ]
    return [_kv_table("Refund", rows)]


def _render_redeem(response: engine_pb2.RedeemResponse) -> list[Table]:
    rows = [("transaction", response.transaction_id)]
    if response.HasField("coupon") or response.discount:
        rows.append(("discount", format_fen(response.discount)))
    if response.amount:
        rows.append(("amount taken", format_fen(response.amount)))
    if response.HasField("gift_card"):
        rows.append(("card balance left", format_fen(response.gift_card.balance)))
    rows.append(("replayed", "yes" if response.replayed else "no"))
    return [_kv_table("Redemption", rows)]


def _render_gift_card(card: common_pb2.GiftCard) -> list[Table]:
    rows = [
        ("card", card.code),
        ("balance", format_fen(card.balance)),
        ("held", format_fen(card.held)),
        ("state", _enum(common_pb2.GiftCardState, card.state, "GIFT_CARD_STATE_")),
        ("expires", _time(card.expires_at) if card.HasField("expires_at") else "never"),
    ]
    return [_kv_table("Gift card", rows)]


def _render_wallet(wallet: common_pb2.Wallet) -> list[Table]:
    tables = []
    balances = Table(title=f"Wallet of user {wallet.user_id}" + (" (FROZEN)" if wallet.frozen else ""))
    balances.add_column("asset")
    balances.add_column("available", justify="right")
    balances.add_column("held", justify="right")
    for balance in wallet.balances:
        asset = _enum(common_pb2.Asset, balance.asset, "ASSET_")
        show = format_fen if balance.asset != common_pb2.ASSET_POINTS else str
        balances.add_row(asset, show(balance.available), show(balance.held))
    tables.append(balances)
    if wallet.points_lots:
        lots = Table(title="Points lots (spent oldest expiry first)")
        lots.add_column("points", justify="right")
        lots.add_column("expires")
        for lot in wallet.points_lots:
            lots.add_row(str(lot.points), _time(lot.expires_at) if lot.HasField("expires_at") else "never")
        tables.append(lots)
    if wallet.coupons:
        coupons = Table(title="Coupons")
        for column in ("coupon", "code", "template", "state", "expires"):
            coupons.add_column(column)
        for coupon in wallet.coupons:
            coupons.add_row(
                coupon.coupon_id,
                coupon.code,
                coupon.template_id,
                _enum(common_pb2.CouponState, coupon.state, "COUPON_STATE_"),
                _time(coupon.expires_at),
            )
        tables.append(coupons)
    if wallet.gift_cards:
        cards = Table(title="Gift cards")
        for column in ("code", "balance", "held", "state"):
            cards.add_column(column, justify="right" if column in ("balance", "held") else "left")
        for card in wallet.gift_cards:
            cards.add_row(
                card.code,
                format_fen(card.balance),
                format_fen(card.held),
                _enum(common_pb2.GiftCardState, card.state, "GIFT_CARD_STATE_"),
            )
        tables.append(cards)
    return tables


RENDERERS: dict[str, Callable[[Any], list[Table]]] = {
    "charge": _render_charge,
    "refund": _render_refund,
    "redeem-coupon": _render_redeem,
    "redeem-card": _render_redeem,
    "balance": _render_gift_card,
    "wallet": _render_wallet,
}


def _render_journal(entries: list[Entry], console: Console) -> None:
    table = Table(title="Journal")
    for column in ("#", "when", "command", "what", "state", "key", "attempts", "result"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        when = datetime.fromtimestamp(entry.created_at).strftime("%m-%d %H:%M:%S")
        style = {PENDING: "yellow", DONE: "green"}.get(entry.state, "red")
        result = entry.reason or ("answer recorded" if entry.state == DONE else "")
        table.add_row(
            str(entry.seq),
            when,
            entry.command,
            entry.summary,
            f"[{style}]{entry.state}[/{style}]",
            entry.idempotency_key,
            str(entry.attempts),
            result,
        )
    console.print(table)


# -- commands -------------------------------------------------------------------------------------


def _run_command(args: argparse.Namespace, journal: Journal, client: OrderClient, out: Output) -> int:
    key = new_idempotency_key(f"pos-{_terminal_id(args.terminal)}")
    command = args.command
    if command == "balance":
        out.response(command, client.get_gift_card(args.card.strip()))
        return EXIT_OK
    if command == "wallet":
        out.response(command, client.get_wallet(args.user))
        return EXIT_OK
    request: Message
    if command == "charge":
        request = build_charge_request(
            args.user,
            args.order,
            args.merchant,
            args.amount,
            idempotency_key=key,
            points=args.points,
            coins=args.coins,
            gift_card_codes=[code.strip() for code in args.gift_card],
            coupon_ids=args.coupon,
        )
        rpc, summary = (
            "TransactionEngine.Charge",
            f"user {args.user} order {args.order} {format_fen(args.amount)}",
        )
    elif command == "refund":
        request = build_refund_request(args.charge, args.amount, idempotency_key=key, reason=args.reason)
        rpc, summary = "TransactionEngine.Refund", f"{args.charge} {format_fen(args.amount)}"
    elif command == "redeem-coupon":
        request = build_redeem_coupon_request(
            args.code.strip(), args.amount, args.merchant, idempotency_key=key
        )
        rpc, summary = "TransactionEngine.Redeem", f"coupon {args.code} order {format_fen(args.amount)}"
    elif command == "redeem-card":
        request = build_redeem_gift_card_request(
            args.code.strip(), args.amount, args.merchant, idempotency_key=key
        )
        rpc, summary = "TransactionEngine.Redeem", f"card {args.code} {format_fen(args.amount)}"
    else:  # pragma: no cover - argparse restricts the choices
        raise ValueError(command)
    response = send_journaled(journal, client, command=command, summary=summary, rpc=rpc, request=request)
    out.response(command, response)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.attempts <= 20 or args.timeout <= 0:
        parser.error("--attempts must be within 1..20 and --timeout positive")
    out = Output(args.json)
    path = default_path() if args.journal is None else Path(args.journal).expanduser()
    try:
        journal = Journal(path)
    except JournalBusy as busy:
        out.error(str(busy))
        return EXIT_BUSY
    with journal:
        if args.command == "journal":
            _render_journal(journal.recent(args.limit), out.console)
            return EXIT_OK
        retry = RetryPolicy(max_attempts=args.attempts, initial_backoff_s=0.1, max_backoff_s=2.0)
        with OrderClient(args.target, timeout=args.timeout, retry=retry) as client:
            code = recover(journal, client, out)
            if code != EXIT_OK:
                return code
            try:
                return _run_command(args, journal, client, out)
            except Unreachable as unreachable:
                kept = " (kept in the journal; it is re-sent on the next start)"
                out.error(
                    f"engine at {args.target} did not answer: {unreachable.error.reason}"
                    + (kept if args.command not in ("balance", "wallet") else "")
                )
                return EXIT_UNREACHABLE
            except CofferError as error:
                if args.command in ("balance", "wallet") and not _definitive(error):
                    out.error(f"engine at {args.target} did not answer: {error.reason}")
                    return EXIT_UNREACHABLE
                out.refused(args.command, error)
                return EXIT_REFUSED


def entry_point() -> None:
    sys.exit(main())
