"""Tables (rich) and ``--json`` lines for the command lines: one renderer per answer type, shared
by ``coffer`` and ``coffer-pos``. Amounts are shown in yuan; a leg says where the value went
("paid from cash balance") and a balance says what is left ("cash balance left")."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from clients._cli import describe_refusal, message_json, refusal_json
from clients.errors import CofferError
from clients.money import format_fen
from coffer.v1 import admin_pb2, common_pb2, engine_pb2

__all__ = [
    "Output",
    "Renderer",
    "enum_name",
    "fold_key",
    "kv_table",
    "render_account",
    "render_audit",
    "render_charge",
    "render_charge_record",
    "render_gift_card",
    "render_issue",
    "render_redeem",
    "render_refund",
    "render_transactions",
    "render_wallet",
    "shown_time",
]

Renderer = Callable[[Any], list[Table]]
#: Width of a folded idempotency key in a table (a journal or history row stays one line at 120
#: columns); ``--json`` and ``journal --full-keys`` show keys whole.
FOLDED_KEY_CHARS = 22
_KEY_TAIL_CHARS = 6
_HOLDER_ACCOUNTS = {"user": "", "gift_card": "gift card", "points_debt": "points debt"}


def fold_key(key: str) -> str:
    """A key short enough for one table line: its start (prefix, terminal) and its end, which
    together still tell entries apart."""
    if len(key) <= FOLDED_KEY_CHARS:
        return key
    head = FOLDED_KEY_CHARS - 1 - _KEY_TAIL_CHARS
    return f"{key[:head]}…{key[-_KEY_TAIL_CHARS:]}"


def shown_time(value: Any) -> str:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return "-"
    moment: datetime = value.ToDatetime(tzinfo=UTC)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix)
    except ValueError:
        return str(value)


def kv_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _replayed(replayed: bool) -> tuple[str, str]:
    return ("replayed", "yes (the first answer to this key)" if replayed else "no")


def _legs(breakdown: common_pb2.Breakdown, verb: str) -> list[tuple[str, str]]:
    """The legs of a breakdown; ``verb`` says the direction ("paid from", "back to")."""
    rows: list[tuple[str, str]] = []
    if breakdown.points_used:
        rows.append(
            (f"{verb} points", f"{breakdown.points_used} points (= {format_fen(breakdown.points_value)})")
        )
    if breakdown.coins_used:
        rows.append((f"{verb} coins", format_fen(breakdown.coins_used)))
    for use in breakdown.gift_cards:
        rows.append((f"{verb} gift card {use.code}", format_fen(use.amount)))
    if breakdown.gift_card_amount and not breakdown.gift_cards:
        rows.append((f"{verb} gift cards", format_fen(breakdown.gift_card_amount)))
    rows.append((f"{verb} cash balance", format_fen(breakdown.cash_amount)))
    return rows


def _cash_left(wallet: common_pb2.Wallet) -> list[tuple[str, str]]:
    """What the user's cash balance holds after the call (nothing when no wallet came back, as
    for a till redemption that belongs to no user at the till)."""
    if not wallet.user_id:
        return []
    available = next((b.available for b in wallet.balances if b.asset == common_pb2.ASSET_CASH), 0)
    return [("cash balance left", format_fen(available))]


def _status(status: int) -> str:
    return enum_name(common_pb2.ChargeStatus, status, "CHARGE_STATUS_")


def render_charge(response: engine_pb2.ChargeResponse) -> list[Table]:
    rows = [
        ("charge", response.charge_id),
        ("status", _status(response.status)),
        ("discount (coupons)", format_fen(response.breakdown.discount)),
        *_legs(response.breakdown, "paid from"),
        *_cash_left(response.wallet),
        _replayed(response.replayed),
    ]
    return [kv_table("Charge", rows), *render_wallet(response.wallet)]


def _charge_rows(charge: common_pb2.Charge) -> list[tuple[str, str]]:
    return [
        ("charge", charge.charge_id),
        ("status", _status(charge.status)),
        ("order total", format_fen(charge.amount)),
        ("authorized", format_fen(charge.authorized_amount)),
        ("captured", format_fen(charge.captured_amount)),
        ("refunded in total", format_fen(charge.refunded_amount)),
        ("released", format_fen(charge.released_amount)),
    ]


def render_charge_record(response: Any) -> list[Table]:
    """A Charge, or a Capture / Void answer (which carry one)."""
    charge: common_pb2.Charge = response if isinstance(response, common_pb2.Charge) else response.charge
    rows = _charge_rows(charge)
    if not isinstance(response, common_pb2.Charge):
        rows.append(_replayed(response.replayed))
    return [kv_table("Charge", rows)]


def render_refund(response: engine_pb2.RefundResponse) -> list[Table]:
    charge = response.charge
    rows = [
        ("refund", response.refund_id),
        ("charge", charge.charge_id),
        ("charge status", _status(charge.status)),
        ("refunded in total", format_fen(charge.refunded_amount)),
        ("of captured", format_fen(charge.captured_amount)),
        *_legs(response.breakdown, "back to"),
        *_cash_left(response.wallet),
        _replayed(response.replayed),
    ]
    return [kv_table("Refund", rows)]


def render_redeem(response: engine_pb2.RedeemResponse) -> list[Table]:
    rows = [("transaction", response.transaction_id)]
    if response.HasField("coupon") or response.discount:
        rows.append(("discount", format_fen(response.discount)))
    if response.amount:
        rows.append(("amount taken", format_fen(response.amount)))
    if response.HasField("gift_card"):
        rows.append(("card balance left", format_fen(response.gift_card.balance)))
    rows.append(_replayed(response.replayed))
    return [kv_table("Redemption", rows)]


def render_gift_card(card: common_pb2.GiftCard) -> list[Table]:
    rows = [
        ("card", card.code),
        ("balance", format_fen(card.balance)),
        ("held", format_fen(card.held)),
        ("state", enum_name(common_pb2.GiftCardState, card.state, "GIFT_CARD_STATE_")),
        ("expires", shown_time(card.expires_at) if card.HasField("expires_at") else "never"),
    ]
    return [kv_table("Gift card", rows)]


def render_issue(response: engine_pb2.IssueResponse) -> list[Table]:
    rows = [("transaction", response.transaction_id)]
    if response.HasField("gift_card"):
        rows += [
            ("gift card", response.gift_card.code),
            ("card balance", format_fen(response.gift_card.balance)),
        ]
    for coupon in response.coupons:
        rows.append((f"coupon {coupon.coupon_id}", coupon.code))
    rows += [*_cash_left(response.wallet), _replayed(response.replayed)]
    return [kv_table("Issued", rows), *render_wallet(response.wallet)]


def _amount(asset: int, value: int) -> str:
    return str(value) if asset == common_pb2.ASSET_POINTS else format_fen(value)


def render_wallet(wallet: common_pb2.Wallet) -> list[Table]:
    tables = []
    balances = Table(title=f"Wallet of user {wallet.user_id}" + (" (FROZEN)" if wallet.frozen else ""))
    balances.add_column("asset")
    balances.add_column("available", justify="right")
    balances.add_column("held", justify="right")
    for balance in wallet.balances:
        asset = enum_name(common_pb2.Asset, balance.asset, "ASSET_")
        balances.add_row(
            asset, _amount(balance.asset, balance.available), _amount(balance.asset, balance.held)
        )
    tables.append(balances)
    if wallet.points_lots:
        lots = Table(title="Points lots (spent oldest expiry first)")
        lots.add_column("points", justify="right")
        lots.add_column("expires")
        for lot in wallet.points_lots:
            lots.add_row(
                str(lot.points), shown_time(lot.expires_at) if lot.HasField("expires_at") else "never"
            )
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
                enum_name(common_pb2.CouponState, coupon.state, "COUPON_STATE_"),
                shown_time(coupon.expires_at),
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
                enum_name(common_pb2.GiftCardState, card.state, "GIFT_CARD_STATE_"),
            )
        tables.append(cards)
    return tables


def _user_changes(transaction: common_pb2.Transaction) -> str:
    """What the transaction did to the user's own accounts (cash, coins, points, cards), summed
    per account and bucket; money in yuan, points as counts."""
    changes: dict[tuple[str, int], int] = {}
    for entry in transaction.entries:
        holder = _HOLDER_ACCOUNTS.get(entry.account)
        if holder is None:
            continue
        if entry.account == "gift_card":
            label = f"gift card {entry.instrument}"
        else:
            label = holder or enum_name(common_pb2.Asset, entry.asset, "ASSET_").lower()
        if entry.bucket == "held":
            label += " held"
        changes[(label, entry.asset)] = changes.get((label, entry.asset), 0) + entry.amount
    shown = []
    for (label, asset), value in changes.items():
        if value:
            sign = "+" if value > 0 else ""
            text = f"{value:+d}" if asset == common_pb2.ASSET_POINTS else sign + format_fen(value)
            shown.append(f"{label} {text}")
    return ", ".join(shown) or "-"


def render_transactions(transactions: Sequence[common_pb2.Transaction]) -> list[Table]:
    table = Table(title="History (newest first)")
    table.add_column("when", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("transaction", no_wrap=True)
    table.add_column("key", no_wrap=True)
    table.add_column("change to the user's balances")
    for transaction in transactions:
        table.add_row(
            shown_time(transaction.created_at),
            enum_name(common_pb2.TransactionType, transaction.type, "TRANSACTION_TYPE_"),
            transaction.transaction_id,
            fold_key(transaction.idempotency_key),
            _user_changes(transaction),
        )
    return [table]


def render_account(state: admin_pb2.AccountState) -> list[Table]:
    rows = [("user", str(state.user_id)), ("frozen", "yes" if state.frozen else "no")]
    if state.reason:
        rows.append(("reason", state.reason))
    rows.append(_replayed(state.replayed))
    return [kv_table("Account", rows)]


def render_audit(report: admin_pb2.AuditReport) -> list[Table]:
    table = Table(title="Audit: " + ("every invariant holds" if report.ok else "INVARIANTS BROKEN"))
    for column in ("shard", "ok", "transactions", "accounts", "violations"):
        table.add_column(column, justify="right" if column in ("transactions", "accounts") else "left")
    for shard in report.shards:
        violations = "; ".join(f"{v.invariant}: {v.detail}" for v in shard.violations) or "-"
        table.add_row(
            str(shard.shard),
            "yes" if shard.ok else "NO",
            str(shard.transactions_checked),
            str(shard.accounts_checked),
            violations,
        )
    return [table]


class Output:
    """Tables on a terminal (rich), or one JSON object per answer with ``--json``; notes and
    errors go to stderr. ``renderers`` maps a command name to the tables of its answer."""

    def __init__(self, as_json: bool, renderers: Mapping[str, Renderer]) -> None:
        self.as_json = as_json
        self.renderers = renderers
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self.err.print(f"[cyan]{text}[/cyan]")

    def error(self, text: str) -> None:
        self.err.print(f"[bold red]{text}[/bold red]")

    def emit(self, payload: Mapping[str, Any]) -> None:
        print(json.dumps(payload), flush=True)

    def response(self, command: str, message: Any, *, recovered: bool = False, **extra: Any) -> None:
        """One answer; ``message`` is a protobuf message or (history) a list of them."""
        if self.as_json:
            body: Any = (
                [message_json(item) for item in message]
                if isinstance(message, list)
                else message_json(message)
            )
            self.emit({"command": command, "recovered": recovered, **extra, "response": body})
            return
        render = self.renderers.get(command)
        if render is None:
            self.console.print(message if isinstance(message, Message) else str(message))
            return
        for table in render(message):
            self.console.print(table)

    def refused(self, command: str, error: CofferError, *, requested_fen: int | None = None) -> None:
        if self.as_json:
            self.emit(refusal_json(command, error, requested_fen=requested_fen))
            return
        self.error(f"refused: {describe_refusal(error, requested_fen=requested_fen)}")
