"""``coffer`` / ``python -m clients.admin``: the operator's and developer's command line.

    coffer top-up --user 42 --amount 100.00
    coffer charge --user 42 --order o-1 --merchant m-7 --amount 30.00
    coffer refund --charge ch_... --amount 10.00
    coffer wallet --user 42
    coffer history --user 42
    coffer health

Amounts are typed and shown in yuan (``150.00``); the engine's API takes integer fen, and the
conversion is exact or refused (:mod:`clients.money`). Every mutating command sends an
idempotency key — ``--key`` sets it, otherwise one is generated — and prints it on stderr, so a
retry after a lost answer reuses it (``--key <printed key>``) and the engine applies it at most
once. ``--json`` prints one JSON object per answer, money as ``x_fen`` integers and ``x_yuan``
strings.

Exit codes: 0 done (``health``: SERVING); 1 refused by the engine (``health``: not SERVING), the
reason on stderr in one line; 2 bad arguments; 3 engine unreachable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.table import Table

from clients._cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_charge_options,
    amount_arg,
    bounded_int,
    command_line,
    connect,
    units_arg,
    user_arg,
)
from clients._render import (
    Output,
    Renderer,
    kv_table,
    render_account,
    render_audit,
    render_charge,
    render_charge_record,
    render_gift_card,
    render_issue,
    render_refund,
    render_transactions,
    render_wallet,
)
from clients.errors import CofferError
from clients.order_client import OrderClient, RetryPolicy, new_idempotency_key
from coffer.v1 import admin_pb2, common_pb2

__all__ = ["build_parser", "main"]

DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TTL_DAYS = 36_600
MAX_HISTORY_ROWS = 200
#: Commands that name a charge by ``--charge`` or by ``--user --order``.
CHARGE_REFERENCES = frozenset({"capture", "void", "refund", "show-charge"})
#: Pages of history ``--order`` searches for its charge (200 transactions a page).
MAX_LOOKUP_PAGES = 5
KEY_PREFIX = "cli"
OPERATOR_DEFAULT = "coffer-cli"
#: The gRPC codes that mean "no answer" rather than "refused" (exit 3).
UNREACHABLE_REASONS = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
COUPON_TYPES: Mapping[str, common_pb2.CouponType.ValueType] = {
    "fixed-off": common_pb2.COUPON_TYPE_FIXED_OFF,
    "percent-off": common_pb2.COUPON_TYPE_PERCENT_OFF,
    "no-threshold": common_pb2.COUPON_TYPE_NO_THRESHOLD,
}


def _reward_arg(text: str) -> admin_pb2.ActivityReward:
    """``TEMPLATE_ID`` or ``TEMPLATE_ID*QUANTITY``: coupons of a template the activity grants."""
    template_id, _, quantity = text.partition("*")
    if not template_id:
        raise argparse.ArgumentTypeError(f"{text!r} is not TEMPLATE_ID or TEMPLATE_ID*QUANTITY")
    return admin_pb2.ActivityReward(template_id=template_id, quantity=bounded_int(1, 100)(quantity or "1"))


def _user(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--user", type=user_arg, required=True, help="user id")


def _charge_ref(sub: argparse.ArgumentParser, what: str = "charge id") -> None:
    """``--charge ID``, or ``--user U --order O [--merchant M]`` to find it in the history."""
    sub.add_argument("--charge", default=None, help=what)
    sub.add_argument("--user", type=user_arg, default=None, help="with --order: whose charge")
    sub.add_argument("--order", default=None, help="instead of --charge: the order the charge paid")
    sub.add_argument("--merchant", default=None, help="with --order: the merchant (when orders repeat)")


def _mutating(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument("--key", default=None, help="idempotency key (default: generated and printed)")
    return sub


def build_parser() -> argparse.ArgumentParser:
    parser = command_line(
        "coffer",
        "Operate and try the coffer engine: issue value, charge, refund, inspect, audit.",
        "Amounts are yuan with at most 2 decimals (150.00); the API underneath takes integer "
        "fen. Exit codes: 0 done, 1 refused, 2 bad arguments, 3 engine unreachable.",
        timeout_s=DEFAULT_TIMEOUT_SECONDS,
        attempts=3,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    top_up = _mutating(commands.add_parser("top-up", help="credit cash paid through a payment channel"))
    _user(top_up)
    top_up.add_argument("--amount", type=amount_arg, required=True, help="yuan, e.g. 100.00")
    top_up.add_argument("--channel", default="alipay", help="payment channel (default alipay)")
    top_up.add_argument("--channel-txn", default=None, help="the channel's transaction id (default: the key)")

    points = _mutating(commands.add_parser("grant-points", help="grant loyalty points"))
    _user(points)
    points.add_argument("--points", type=units_arg, required=True, help="whole points")
    points.add_argument("--ttl-days", type=bounded_int(0, MAX_TTL_DAYS), default=0, help="0: never expire")
    points.add_argument("--reason", default="granted with coffer")

    coins = _mutating(commands.add_parser("grant-coins", help="grant virtual coins"))
    _user(coins)
    coins.add_argument("--coins", type=units_arg, required=True, help="whole coins")
    coins.add_argument("--reason", default="granted with coffer")

    sell = _mutating(commands.add_parser("sell-card", help="sell a gift card paid through a payment channel"))
    _user(sell)
    sell.add_argument("--amount", type=amount_arg, required=True, help="card value in yuan")
    sell.add_argument("--channel", required=True, help="payment channel")
    sell.add_argument("--channel-txn", required=True, help="the channel's transaction id")
    sell.add_argument("--ttl-days", type=bounded_int(0, MAX_TTL_DAYS), default=0, help="0: never expires")

    promo = _mutating(commands.add_parser("issue-card", help="issue a promotional gift card (no payment)"))
    _user(promo)
    promo.add_argument("--amount", type=amount_arg, required=True, help="card value in yuan")
    promo.add_argument("--ttl-days", type=bounded_int(0, MAX_TTL_DAYS), default=0, help="0: never expires")

    template = _mutating(commands.add_parser("create-template", help="create a coupon template"))
    template.add_argument("--name", required=True)
    template.add_argument("--type", choices=sorted(COUPON_TYPES), required=True)
    template.add_argument(
        "--amount-off", type=amount_arg, default=0, help="yuan off (fixed-off, no-threshold)"
    )
    template.add_argument(
        "--percent-bps", type=bounded_int(0, 10_000), default=0, help="bps off (percent-off)"
    )
    template.add_argument("--min-spend", type=amount_arg, default=0, help="yuan the order must reach")
    template.add_argument("--max-discount", type=amount_arg, default=0, help="cap of a percent-off, yuan")
    template.add_argument("--stock", type=units_arg, required=True, help="coupons in total")
    template.add_argument("--per-user-limit", type=bounded_int(1, 1000), default=1)
    template.add_argument("--valid-days", type=bounded_int(1, MAX_TTL_DAYS), default=30, help="after a claim")

    activity = _mutating(commands.add_parser("create-activity", help="create an activity (a reward bundle)"))
    activity.add_argument("--name", required=True)
    activity.add_argument(
        "--coupon", type=_reward_arg, action="append", default=[], help="TEMPLATE_ID[*QUANTITY] (repeatable)"
    )
    activity.add_argument("--points", type=units_arg, default=0, help="points granted")
    activity.add_argument("--points-ttl-days", type=bounded_int(0, MAX_TTL_DAYS), default=0)

    charge = _mutating(commands.add_parser("charge", help="pay an order from a user's wallet"))
    _user(charge)
    charge.add_argument("--merchant", required=True, help="merchant id")
    add_charge_options(charge)
    charge.add_argument("--authorize-only", action="store_true", help="hold the value; capture or void later")

    capture = _mutating(commands.add_parser("capture", help="capture an authorized charge"))
    _charge_ref(capture)
    capture.add_argument("--amount", type=amount_arg, default=0, help="yuan to capture (default: all)")

    void = _mutating(commands.add_parser("void", help="release an authorized charge"))
    _charge_ref(void)

    refund = _mutating(commands.add_parser("refund", help="refund a charge, whole or part"))
    _charge_ref(refund, "charge id or till redemption transaction id")
    refund.add_argument("--amount", type=amount_arg, default=0, help="yuan to refund (default: all)")
    refund.add_argument("--reason", default="")

    show = commands.add_parser("show-charge", help="one charge: amounts, status, refunds")
    _charge_ref(show)

    card = commands.add_parser("card", help="a gift card's balance")
    card.add_argument("--code", required=True)

    wallet = commands.add_parser("wallet", help="a user's balances, points, coupons and gift cards")
    _user(wallet)

    history = commands.add_parser("history", help="a user's transactions, newest first")
    _user(history)
    history.add_argument("--limit", type=bounded_int(1, MAX_HISTORY_ROWS), default=20)

    for name, text in (("freeze", "freeze a wallet"), ("unfreeze", "unfreeze a wallet")):
        account = _mutating(commands.add_parser(name, help=text))
        _user(account)
        account.add_argument("--reason", required=True)
        account.add_argument("--operator", default=OPERATOR_DEFAULT, help="who does it (for the audit trail)")

    audit = commands.add_parser("audit", help="check the ledger invariants on every shard (or one)")
    audit.add_argument("--shard", type=bounded_int(0, 1023), default=None, help="physical shard index")

    events = commands.add_parser(
        "audit-events", help="audit-trail rows, newest first, by user, order, charge or caller"
    )
    events.add_argument("--user", type=user_arg, default=0, help="only this user's rows")
    events.add_argument("--order", default="", help="only rows of this order id")
    events.add_argument("--charge", default="", help="only rows of this charge id")
    events.add_argument("--caller", default="", help="only rows of this caller name")
    events.add_argument("--limit", type=bounded_int(1, MAX_HISTORY_ROWS), default=50, help="rows per page")
    events.add_argument("--page-token", default="", help="the next page (printed after a full page)")

    commands.add_parser("health", help="grpc.health.v1 Check; exit 0 only when SERVING")
    for sub in commands.choices.values():
        # --json after the command too; SUPPRESS keeps a global --json from being reset.
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="answer as JSON")
    return parser


# -- commands: each returns the answer to show --------------------------------------------------


def _issue(client: OrderClient, args: argparse.Namespace, key: str) -> Any:
    command = args.command
    if command == "top-up":
        return client.issue_top_up(
            args.user,
            args.amount,
            payment_channel=args.channel,
            channel_txn_id=args.channel_txn or key,
            idempotency_key=key,
        )
    if command == "grant-points":
        return client.issue_points(
            args.user, args.points, ttl_days=args.ttl_days, reason=args.reason, idempotency_key=key
        )
    if command == "grant-coins":
        return client.issue_coins(args.user, args.coins, reason=args.reason, idempotency_key=key)
    if command == "sell-card":
        return client.issue_gift_card(
            args.user,
            args.amount,
            payment_channel=args.channel,
            channel_txn_id=args.channel_txn,
            ttl_days=args.ttl_days,
            idempotency_key=key,
        )
    return client.issue_gift_card(args.user, args.amount, ttl_days=args.ttl_days, idempotency_key=key)


def _create(client: OrderClient, args: argparse.Namespace, key: str) -> Any:
    if args.command == "create-template":
        return client.create_coupon_template(
            admin_pb2.CreateCouponTemplateRequest(
                idempotency_key=key,
                name=args.name,
                type=COUPON_TYPES[args.type],
                amount_off=args.amount_off,
                discount_bps=args.percent_bps,
                min_spend=args.min_spend,
                max_discount=args.max_discount,
                total_stock=args.stock,
                per_user_limit=args.per_user_limit,
                valid_days_after_claim=args.valid_days,
            )
        )
    rewards = list(args.coupon)
    if args.points:
        rewards.append(admin_pb2.ActivityReward(points=args.points, points_ttl_days=args.points_ttl_days))
    return client.create_activity(
        admin_pb2.CreateActivityRequest(idempotency_key=key, name=args.name, rewards=rewards)
    )


class ChargeNotFound(Exception):
    """No charge of the user's recent history paid that order."""


def _charge_id(client: OrderClient, args: argparse.Namespace) -> str:
    """The ``--charge`` given, or the newest charge of ``--user`` for ``--order`` (and
    ``--merchant``), looked up in at most the last MAX_LOOKUP_PAGES pages of the history."""
    if args.charge:
        return str(args.charge)
    transactions = client.iter_transactions(args.user, page_size=MAX_HISTORY_ROWS, max_pages=MAX_LOOKUP_PAGES)
    seen: set[str] = set()
    for transaction in transactions:
        if transaction.type != common_pb2.TRANSACTION_TYPE_CHARGE or transaction.charge_id in seen:
            continue
        seen.add(transaction.charge_id)
        charge = client.get_charge(transaction.charge_id)
        if charge.order_id == args.order and args.merchant in (None, charge.merchant_id):
            return charge.charge_id
    where = f" at {args.merchant}" if args.merchant else ""
    raise ChargeNotFound(f"no charge of user {args.user} paid order {args.order}{where}")


def _move(client: OrderClient, args: argparse.Namespace, key: str) -> Any:
    command = args.command
    if command == "charge":
        return client.charge(
            args.user,
            args.order,
            args.merchant,
            args.amount,
            points=args.points,
            coins=args.coins,
            gift_card_codes=[code.strip() for code in args.gift_card],
            coupon_ids=args.coupon,
            authorize_only=args.authorize_only,
            idempotency_key=key,
        )
    charge_id = _charge_id(client, args)
    if command == "capture":
        return client.capture(charge_id, args.amount, idempotency_key=key)
    if command == "void":
        return client.void(charge_id, idempotency_key=key)
    return client.refund(charge_id, args.amount, reason=args.reason, idempotency_key=key)


def _account(client: OrderClient, args: argparse.Namespace, key: str) -> Any:
    return client.set_account_frozen(
        args.user,
        args.command == "freeze",
        reason=args.reason,
        operator_id=args.operator,
        idempotency_key=key,
    )


def _read(client: OrderClient, args: argparse.Namespace) -> Any:
    command = args.command
    if command == "wallet":
        return client.get_wallet(args.user)
    if command == "history":
        return list(client.list_transactions(args.user, page_size=args.limit).transactions)
    if command == "show-charge":
        return client.get_charge(_charge_id(client, args))
    if command == "card":
        return client.get_gift_card(args.code.strip())
    if command == "audit-events":
        return client.list_audit_events(
            user_id=args.user,
            order_id=args.order,
            charge_id=args.charge,
            caller=args.caller,
            page_size=args.limit,
            page_token=args.page_token,
        )
    return client.audit(args.shard)


Mutation = Callable[[OrderClient, argparse.Namespace, str], Any]
MUTATIONS: Mapping[str, Mutation] = {
    **dict.fromkeys(("top-up", "grant-points", "grant-coins", "sell-card", "issue-card"), _issue),
    **dict.fromkeys(("create-template", "create-activity"), _create),
    **dict.fromkeys(("charge", "capture", "void", "refund"), _move),
    **dict.fromkeys(("freeze", "unfreeze"), _account),
}


def _render_created(answer: Any) -> list[Table]:
    """A new coupon template or activity: its id."""
    if isinstance(answer, admin_pb2.CreateCouponTemplateResponse):
        made = ("template", answer.template_id)
    else:
        made = ("activity", answer.activity_id)
    return [kv_table("Created", [made, ("replayed", "yes" if answer.replayed else "no")])]


def _render_audit_events(page: admin_pb2.ListAuditEventsResponse) -> list[Table]:
    table = Table(title="Audit trail, newest first")
    for column in ("at", "caller", "role", "rpc", "user", "seq", "key", "charge", "amount"):
        table.add_column(column)
    for event in page.events:
        table.add_row(
            event.at.ToDatetime().isoformat(timespec="milliseconds") + "Z",
            event.caller,
            event.role,
            event.rpc,
            str(event.user_id),
            str(event.seq),
            event.idempotency_key,
            event.charge_id or "-",
            str(event.amount) if event.HasField("amount") else "-",
        )
    tables = [table]
    if page.next_page_token:
        tables.append(kv_table("More", [("--page-token", page.next_page_token)]))
    return tables


RENDERERS: Mapping[str, Renderer] = {
    "create-template": _render_created,
    "create-activity": _render_created,
    **dict.fromkeys(("top-up", "grant-points", "grant-coins", "sell-card", "issue-card"), render_issue),
    "charge": render_charge,
    "capture": render_charge_record,
    "void": render_charge_record,
    "show-charge": render_charge_record,
    "refund": render_refund,
    "card": render_gift_card,
    "wallet": render_wallet,
    "history": render_transactions,
    "freeze": render_account,
    "unfreeze": render_account,
    "audit": render_audit,
    "audit-events": _render_audit_events,
}


def _requested_fen(args: argparse.Namespace) -> int | None:
    amount = getattr(args, "amount", None)
    return amount if isinstance(amount, int) and amount > 0 else None


def _health(client: OrderClient, out: Output) -> int:
    status = client.health()
    if out.as_json:
        out.emit({"command": "health", "status": status})
    else:
        out.console.print(f"{client.target}: {status}")
    return EXIT_OK if status == "SERVING" else EXIT_REFUSED


def _run(client: OrderClient, args: argparse.Namespace, out: Output) -> int:
    command = args.command
    if command == "health":
        return _health(client, out)
    mutation = MUTATIONS.get(command)
    if mutation is None:
        out.response(command, _read(client, args))
        return EXIT_OK
    key = args.key or new_idempotency_key(KEY_PREFIX)
    # Printed before the call: if the answer is lost, the same key re-sent is applied at most once.
    out.note(f"idempotency key: {key}")
    answer = mutation(client, args, key)
    out.response(command, answer, idempotency_key=key)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in CHARGE_REFERENCES and (
        (args.charge is None) == (args.order is None) or (args.order is not None and args.user is None)
    ):
        parser.error("give --charge ID, or --user and --order (with --merchant when orders repeat)")
    out = Output(args.json, RENDERERS)
    retry = RetryPolicy(max_attempts=args.attempts, initial_backoff_s=0.1, max_backoff_s=2.0)
    try:
        client = connect(args, retry)
    except (ValueError, OSError) as error:
        print(f"coffer: {error}", file=sys.stderr)
        return EXIT_USAGE
    with client:
        try:
            return _run(client, args, out)
        except ChargeNotFound as missing:
            print(f"coffer: {missing}", file=sys.stderr)
            return EXIT_REFUSED
        except CofferError as error:
            if error.reason in UNREACHABLE_REASONS:
                print(f"coffer: the engine at {args.target} did not answer ({error.reason})", file=sys.stderr)
                return EXIT_UNREACHABLE
            out.refused(args.command, error, requested_fen=_requested_fen(args))
            return EXIT_REFUSED
