"""Read-only use cases: wallets, charges, ledger history."""

from __future__ import annotations

import base64

from engine.domain.errors import invalid_argument
from engine.domain.results import ChargeView, EntryView, TransactionPage, TransactionView, WalletView
from engine.domain.validation import require_user_id
from engine.service.context import EngineContext
from engine.service.refund import charge_not_found, shard_of_charge
from engine.storage.charges import charge_view, read_charge_row
from engine.storage.database import read_only
from engine.storage.ledger_history import read_entries, read_transactions
from engine.storage.wallets import read_wallet

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def get_wallet(context: EngineContext, user_id: int) -> WalletView:
    require_user_id(user_id)
    with read_only(context.router.for_user(user_id).engine) as connection:
        return read_wallet(connection, user_id, context.now_us())


def get_charge(context: EngineContext, charge_id: str) -> ChargeView:
    if not charge_id:
        raise invalid_argument("charge_id", "is required")
    shard = shard_of_charge(context, charge_id)
    with read_only(shard.engine) as connection:
        row = read_charge_row(connection, charge_id)
        if row is None:
            raise charge_not_found(charge_id)
        return charge_view(connection, row)


def _encode_token(created_at_us: int, transaction_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at_us}:{transaction_id}".encode()).decode()


def _decode_token(token: str) -> tuple[int, str]:
    try:
        created, transaction_id = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
        return int(created), transaction_id
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid_argument("page_token", "is not a token this engine issued") from error


def list_transactions(
    context: EngineContext, user_id: int, page_size: int, page_token: str
) -> TransactionPage:
    """A user's ledger history, newest first, ``page_size`` at a time (default 50, at most 200)."""
    require_user_id(user_id)
    if page_size < 0:
        raise invalid_argument("page_size", "must not be negative")
    if page_size > MAX_PAGE_SIZE:
        raise invalid_argument("page_size", f"must be at most {MAX_PAGE_SIZE}")
    size = page_size or DEFAULT_PAGE_SIZE
    before = _decode_token(page_token) if page_token else None
    with read_only(context.router.for_user(user_id).engine) as connection:
        rows = read_transactions(connection, user_id, size + 1, before)
        page = rows[:size]
        entries_by_transaction: dict[str, list[EntryView]] = {row.transaction_id: [] for row in page}
        for entry in read_entries(connection, list(entries_by_transaction)):
            entries_by_transaction[entry.transaction_id].append(
                EntryView(entry.account, entry.asset, entry.amount, entry.instrument, entry.bucket)
            )
    transactions = tuple(
        TransactionView(
            transaction_id=row.transaction_id,
            type=row.type,
            user_id=row.user_id,
            created_at_us=row.created_at_us,
            idempotency_key=row.idempotency_key,
            charge_id=row.charge_id,
            memo=row.memo,
            entries=tuple(entries_by_transaction[row.transaction_id]),
        )
        for row in page
    )
    next_token = ""
    if len(rows) > size:
        last = page[-1]
        next_token = _encode_token(last.created_at_us, last.transaction_id)
    return TransactionPage(transactions, next_token)
