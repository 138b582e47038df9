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
import os
import re
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from clients._cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_charge_options,
    amount_arg,
    command_line,
    connect,
    describe_refusal,
    user_arg,
)
from clients._render import (
    Output,
    Renderer,
    fold_key,
    render_charge,
    render_gift_card,
    render_issue,
    render_redeem,
    render_refund,
    render_wallet,
)
from clients.errors import REASON_CLASSES, CofferError
from clients.money import format_fen
from clients.order_client import (
    RPCS,
    OrderClient,
    RetryPolicy,
    build_charge_request,
    build_gift_card_issue_request,
    build_redeem_coupon_request,
    build_redeem_gift_card_request,
    build_refund_request,
    new_idempotency_key,
)
from clients.pos.journal import DONE, PENDING, Entry, Journal, JournalBusy, default_path
from coffer.v1 import engine_pb2

__all__ = [
    "EXIT_BUSY",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "fold_key",
    "main",
]

CRASH_HOOK = "COFFER_POS_CRASH_AFTER_SEND"
EXIT_BUSY = 4
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Longest gift-card lifetime a till may sell.
MAX_TTL_DAYS = 36_600
#: Commands that only read: nothing is journaled, and a failure is never "kept".
READ_ONLY = frozenset({"balance", "wallet"})


class Unreachable(Exception):
    """The engine did not answer after the retries; the journal entry stays pending."""

    def __init__(self, error: CofferError) -> None:
        super().__init__(str(error))
        self.error = error


def _terminal_id(raw: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:32]
    return cleaned or "till"


def build_parser() -> argparse.ArgumentParser:
    parser = command_line(
        "coffer-pos",
        "Cashier till for coffer: balance checks, redemptions, charges and refunds.",
        "Amounts are yuan with at most 2 decimals (150.00). Exit codes: 0 done, 1 refused, "
        "2 bad input, 3 engine unreachable (kept in the journal), 4 journal busy.",
        timeout_s=DEFAULT_TIMEOUT_SECONDS,
        attempts=5,
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
    add_charge_options(charge)
    merchant(charge)

    refund = commands.add_parser("refund", help="refund (part of) a charge or till redemption")
    refund.add_argument("--charge", required=True, help="charge id or redemption transaction id")
    refund.add_argument("--amount", type=amount_arg, required=True, help="amount, e.g. 20.00")
    refund.add_argument("--reason", default="", help="refund reason")

    sell = commands.add_parser("sell-card", help="sell a new gift card, paid through a payment channel")
    sell.add_argument("--user", type=user_arg, required=True, help="the card's owner")
    sell.add_argument("--amount", type=amount_arg, required=True, help="card value, e.g. 100.00")
    sell.add_argument("--channel", required=True, help="payment channel that took the money (alipay, ...)")
    sell.add_argument("--channel-txn", required=True, help="the channel's transaction id (dedupes re-sends)")
    sell.add_argument("--ttl-days", type=int, default=0, help="days until the card expires (0: never)")

    wallet = commands.add_parser("wallet", help="a user's balances, points, coupons and gift cards")
    wallet.add_argument("--user", type=user_arg, required=True)

    journal = commands.add_parser("journal", help="list this till's journal (no engine needed)")
    journal.add_argument("--limit", type=int, default=20)
    journal.add_argument("--full-keys", action="store_true", help="show whole keys (they fold otherwise)")
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
            wording = describe_refusal(error, requested_fen=requested_fen(request))
            out.note(f"journal #{entry.seq} {entry.command} ({entry.summary}) refused: {wording}")
            continue
        replayed = bool(getattr(response, "replayed", False))
        out.note(
            f"journal #{entry.seq} {entry.command} ({entry.summary}) key {entry.idempotency_key}: "
            + ("already applied, answer recovered" if replayed else "applied now")
        )
        out.response(entry.command, response, recovered=True)
    return EXIT_OK


# -- output ---------------------------------------------------------------------------------------

RENDERERS: dict[str, Renderer] = {
    "charge": render_charge,
    "refund": render_refund,
    "redeem-coupon": render_redeem,
    "redeem-card": render_redeem,
    "sell-card": render_issue,
    "balance": render_gift_card,
    "wallet": render_wallet,
}


def _render_journal(entries: list[Entry], console: Console, *, full_keys: bool) -> None:
    table = Table(title="Journal")
    for column in ("#", "when", "command", "what", "state", "key", "attempts", "result"):
        # Short columns never wrap; the free text ones fold inside their width.
        wraps = column == "what" or (column == "key" and full_keys)
        table.add_column(column, overflow="fold", no_wrap=not wraps)
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
            entry.idempotency_key if full_keys else fold_key(entry.idempotency_key),
            str(entry.attempts),
            result,
        )
    console.print(table)


# -- commands -------------------------------------------------------------------------------------


def requested_fen(request: Message) -> int | None:
    """The amount a money request asks for (fen), to word a refusal; None when it has none."""
    if isinstance(request, engine_pb2.RedeemRequest):
        kind = request.WhichOneof("kind")
        if kind == "gift_card":
            return request.gift_card.amount
        return request.coupon_code.order_amount if kind == "coupon_code" else None
    if isinstance(request, engine_pb2.IssueRequest):
        return request.gift_card.amount if request.WhichOneof("kind") == "gift_card" else None
    amount = getattr(request, "amount", None)
    return amount if isinstance(amount, int) else None


def _prepare(args: argparse.Namespace, key: str) -> tuple[str, str, Message]:
    """(rpc, journal summary, request) of a money command."""
    command = args.command
    if command == "charge":
        request: Message = build_charge_request(
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
        return (
            "TransactionEngine.Charge",
            f"user {args.user} order {args.order} {format_fen(args.amount)}",
            request,
        )
    if command == "refund":
        request = build_refund_request(args.charge, args.amount, idempotency_key=key, reason=args.reason)
        return "TransactionEngine.Refund", f"{args.charge} {format_fen(args.amount)}", request
    if command == "redeem-coupon":
        request = build_redeem_coupon_request(
            args.code.strip(), args.amount, args.merchant, idempotency_key=key
        )
        return "TransactionEngine.Redeem", f"coupon {args.code} order {format_fen(args.amount)}", request
    if command == "redeem-card":
        request = build_redeem_gift_card_request(
            args.code.strip(), args.amount, args.merchant, idempotency_key=key
        )
        return "TransactionEngine.Redeem", f"card {args.code} {format_fen(args.amount)}", request
    if command == "sell-card":
        request = build_gift_card_issue_request(
            args.user,
            args.amount,
            idempotency_key=key,
            payment_channel=args.channel,
            channel_txn_id=args.channel_txn,
            ttl_days=args.ttl_days,
        )
        summary = f"card for user {args.user} {format_fen(args.amount)} via {args.channel} {args.channel_txn}"
        return "TransactionEngine.Issue", summary, request
    raise ValueError(command)  # pragma: no cover - argparse restricts the choices


def _run_command(args: argparse.Namespace, journal: Journal, client: OrderClient, out: Output) -> int:
    command = args.command
    if command == "balance":
        out.response(command, client.get_gift_card(args.card.strip()))
        return EXIT_OK
    if command == "wallet":
        out.response(command, client.get_wallet(args.user))
        return EXIT_OK
    key = new_idempotency_key(f"pos-{_terminal_id(args.terminal)}")
    rpc, summary, request = _prepare(args, key)
    try:
        response = send_journaled(journal, client, command=command, summary=summary, rpc=rpc, request=request)
    except CofferError as error:
        if not _definitive(error):
            raise
        out.refused(command, error, requested_fen=requested_fen(request))
        return EXIT_REFUSED
    out.response(command, response)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.command == "sell-card" and not 0 <= args.ttl_days <= MAX_TTL_DAYS:
        parser.error(f"--ttl-days must be within 0..{MAX_TTL_DAYS}")
    out = Output(args.json, RENDERERS)
    path = default_path() if args.journal is None else Path(args.journal).expanduser()
    try:
        journal = Journal(path)
    except JournalBusy as busy:
        out.error(str(busy))
        return EXIT_BUSY
    with journal:
        if args.command == "journal":
            _render_journal(journal.recent(args.limit), out.console, full_keys=args.full_keys)
            return EXIT_OK
        retry = RetryPolicy(max_attempts=args.attempts, initial_backoff_s=0.1, max_backoff_s=2.0)
        try:
            client = connect(args, retry)
        except (ValueError, OSError) as error:
            out.error(f"coffer-pos: {error}")
            return EXIT_USAGE
        with client:
            code = recover(journal, client, out)
            if code != EXIT_OK:
                return code
            try:
                return _run_command(args, journal, client, out)
            except Unreachable as unreachable:
                kept = " (kept in the journal; it is re-sent on the next start)"
                out.error(
                    f"engine at {args.target} did not answer: {unreachable.error.reason}"
                    + (kept if args.command not in READ_ONLY else "")
                )
                return EXIT_UNREACHABLE
            except CofferError as error:
                if args.command in READ_ONLY and not _definitive(error):
                    out.error(f"engine at {args.target} did not answer: {error.reason}")
                    return EXIT_UNREACHABLE
                out.refused(args.command, error)
                return EXIT_REFUSED


def entry_point() -> None:
    sys.exit(main())
