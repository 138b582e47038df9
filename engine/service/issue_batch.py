"""IssueBatch: up to 10,000 Issue requests in one call, each applied or refused on its own
(CONTRACT §2; TigerBeetle's batch shape; docs/bulk.md).

Points and coins grants — the campaign case — take the bulk path: the items are routed to their
shards and applied in chunks of at most :data:`MAX_CHUNK_ITEMS`, one database transaction per
chunk, with one set-based statement per table (engine/storage/bulk.py). The other kinds (a
top-up with its channel dedupe, a coupon, a gift card, an activity) are not worth a bulk path:
they run item by item through :func:`engine.service.issue.issue`, still one result each.

Every rule is the single Issue's: the same validation (:func:`validate_issue`), the same
payload digest and key scope (so a key first used by ``Issue`` replays here and the other way
round), the same stored answer (an :class:`IssueResult`), the points-debt rule of
:mod:`engine.domain.grants`, credits to frozen wallets accepted like a single Issue accepts them
(engine.service.account_admin). Per item:

* a key claimed before with the same payload: replayed (the original transaction id);
* a key claimed before with another payload: ALREADY_EXISTS / IDEMPOTENCY_KEY_REUSED;
* a bad item: its INVALID_ARGUMENT (or AMOUNT_LIMIT_EXCEEDED), nothing else is affected;
* the same ``(user, key)`` twice: the first is applied, the second answered after it (a replay
  or a reuse) — it goes into the next chunk;
* the same user twice under different keys: both applied, in arrival order.

A chunk that meets an unexpected database error (after the bounded retries of transient
conflicts), or a balance that would pass its limit, rolls back and its items are rerun one by
one through the single use case before any of them is answered, so each gets its own outcome.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from engine.domain import ids
from engine.domain.commands import CoinsSpec, IssueCommand, PointsSpec
from engine.domain.errors import CofferError, invalid_argument, require
from engine.domain.grants import post_credit, post_grant, split_grant
from engine.domain.ledger import COINS_ISSUED, POINTS_ISSUED, Posting, TransactionType
from engine.domain.money import Asset
from engine.domain.serialization import to_jsonable
from engine.domain.time_units import expiry_after_days
from engine.service.audit_trail import mutation_event
from engine.service.context import EngineContext
from engine.service.idempotent import key_in_use, key_reused
from engine.service.issue import ISSUE_OPERATION, issue, validate_issue
from engine.storage.audit_trail import append_audit_events
from engine.storage.balances import credit_available_many, lock_points_balances
from engine.storage.bulk import ensure_accounts, lock_points_debts
from engine.storage.idempotency import StoredKey, claim_columns, claim_keys, read_keys, store_responses
from engine.storage.ledger import TransactionRecord, append_transactions
from engine.storage.lots import insert_lots
from engine.storage.points_debt import pay_points_debt
from engine.storage.router import Shard
from engine.storage.unit_of_work import UnitOfWork, run_transaction
from engine.storage.wallets import read_balance_wallets

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_CHUNK_ITEMS",
    "BatchItem",
    "ItemOutcome",
    "grant_digest",
    "issue_batch",
    "stored_answer",
]

logger = logging.getLogger("coffer.batch")

#: Items in one IssueBatch call (CONTRACT §2).
MAX_BATCH_ITEMS = 10_000
#: Items applied in one database transaction: large enough that a statement's fixed cost is
#: spread thin, small enough that a transaction's locks and WAL stay short.
MAX_CHUNK_ITEMS = 1_000

#: An item as the service receives it: a command, or the refusal its conversion already gave.
BatchItem = IssueCommand | CofferError


@dataclass(frozen=True)
class ItemOutcome:
    """The answer for ``items[index]``: applied (``transaction_id``) or refused (``error``)."""

    index: int
    transaction_id: str = ""
    replayed: bool = False
    error: CofferError | None = None


@dataclass(frozen=True)
class _Grant:
    """A points or coins grant waiting for its chunk, with its idempotency fingerprint."""

    index: int
    command: IssueCommand
    spec: PointsSpec | CoinsSpec
    digest: str

    @property
    def key(self) -> tuple[int, str]:
        return (self.command.user_id, self.command.idempotency_key)


def issue_batch(
    context: EngineContext, items: Sequence[BatchItem], *, chunk_items: int = MAX_CHUNK_ITEMS
) -> list[ItemOutcome]:
    """Apply every item on its own; one outcome per item, in order."""
    if not items:
        raise invalid_argument("items", "a batch holds at least one item")
    if len(items) > MAX_BATCH_ITEMS:
        raise invalid_argument("items", f"a batch holds at most {MAX_BATCH_ITEMS} items")
    require(0 < chunk_items <= MAX_CHUNK_ITEMS, f"a chunk holds 1..{MAX_CHUNK_ITEMS} items")
    outcomes: dict[int, ItemOutcome] = {}
    grants: list[_Grant] = []
    singles: list[tuple[int, IssueCommand]] = []
    for index, item in enumerate(items):
        if isinstance(item, CofferError):
            outcomes[index] = ItemOutcome(index, error=item)
            continue
        try:
            validate_issue(item)
        except CofferError as error:
            outcomes[index] = ItemOutcome(index, error=error)
            continue
        if isinstance(item.spec, PointsSpec | CoinsSpec):
            grants.append(_Grant(index, item, item.spec, grant_digest(item, item.spec)))
        else:
            singles.append((index, item))
    # A key shared with an item-by-item kind keeps arrival order only if all its uses run that way.
    single_keys = {(command.user_id, command.idempotency_key) for _, command in singles}
    if single_keys:
        singles += [(grant.index, grant.command) for grant in grants if grant.key in single_keys]
        grants = [grant for grant in grants if grant.key not in single_keys]
        singles.sort(key=lambda pair: pair[0])
    by_shard: dict[int, list[_Grant]] = defaultdict(list)
    for grant in grants:
        by_shard[context.router.for_user(grant.command.user_id).index].append(grant)
    for shard_index, shard_grants in sorted(by_shard.items()):
        shard = context.router.shards[shard_index]
        for chunk in _chunks(shard_grants, chunk_items):
            for outcome in _apply_chunk(context, shard, chunk):
                outcomes[outcome.index] = outcome
    for index, command in singles:
        outcomes[index] = _one_by_one(context, index, command)
    require(len(outcomes) == len(items), "one outcome per batch item")
    return [outcomes[index] for index in range(len(items))]


def _chunks(grants: Sequence[_Grant], chunk_items: int) -> list[list[_Grant]]:
    """Consecutive chunks of at most ``chunk_items``, no ``(user, key)`` twice in one: a repeat
    starts the next chunk, so it is answered after the first use has committed."""
    chunks: list[list[_Grant]] = [[]]
    keys: set[tuple[int, str]] = set()
    for grant in grants:
        if len(chunks[-1]) == chunk_items or grant.key in keys:
            chunks.append([])
            keys = set()
        chunks[-1].append(grant)
        keys.add(grant.key)
    return [chunk for chunk in chunks if chunk]


def _one_by_one(context: EngineContext, index: int, command: IssueCommand) -> ItemOutcome:
    """One item through the single Issue use case (its own transaction and retries)."""
    try:
        result = issue(context, command)
    except CofferError as error:
        return ItemOutcome(index, error=error)
    return ItemOutcome(index, transaction_id=result.transaction_id, replayed=result.replayed)


def _apply_chunk(context: EngineContext, shard: Shard, chunk: Sequence[_Grant]) -> list[ItemOutcome]:
    def attempt() -> list[ItemOutcome]:
        now_us = context.now_us()
        with UnitOfWork(shard.engine) as unit:
            outcomes = _apply(context, unit.connection, chunk, now_us)
            unit.commit()
            return outcomes

    try:
        return run_transaction(attempt, attempts=context.settings.transaction_attempts)
    except (CofferError, DBAPIError) as error:
        # Nothing of the chunk was committed: rerun its items one by one, so the one that
        # failed gets its own refusal and the others their effect.
        logger.warning(
            "a chunk of %d grants on shard %d is rerun item by item: %r", len(chunk), shard.index, error
        )
        return [_one_by_one(context, grant.index, grant.command) for grant in chunk]


def _apply(
    context: EngineContext, connection: Connection, chunk: Sequence[_Grant], now_us: int
) -> list[ItemOutcome]:
    """Claim the chunk's keys, answer the replays and reuses, apply the rest: one statement per
    table. Raises (rolling the chunk back) on anything unexpected."""
    ordered = sorted(chunk, key=lambda grant: grant.key)
    claimed = claim_keys(
        connection,
        claim_columns(
            [(*grant.key, grant.digest) for grant in ordered], operation=ISSUE_OPERATION, now_us=now_us
        ),
    )
    stored = read_keys(connection, [grant.key for grant in ordered if grant.key not in claimed])
    outcomes = [
        _answer_claimed_before(grant, stored[grant.key]) for grant in chunk if grant.key not in claimed
    ]
    fresh = [grant for grant in chunk if grant.key in claimed]
    return outcomes + _apply_fresh(context, connection, fresh, now_us)


def _answer_claimed_before(grant: _Grant, stored: StoredKey) -> ItemOutcome:
    """The answer for a key some earlier request claimed (committed: PostgreSQL waited for it)."""
    if stored.request_digest != grant.digest:
        return ItemOutcome(grant.index, error=key_reused(grant.command.idempotency_key))
    if stored.response is None:
        return ItemOutcome(grant.index, error=key_in_use(grant.command.idempotency_key))
    return ItemOutcome(grant.index, transaction_id=_stored_transaction_id(stored.response), replayed=True)


def _stored_transaction_id(response: str) -> str:
    """The transaction id of a stored :class:`IssueResult` (its JSON form, ``dumps``), read
    without rebuilding the whole result: a replayed campaign reads a million of them."""
    transaction_id = json.loads(response)["transaction_id"]
    require(
        isinstance(transaction_id, str) and bool(transaction_id),
        "a stored Issue answer names its transaction",
    )
    return str(transaction_id)


def _apply_fresh(
    context: EngineContext, connection: Connection, fresh: Sequence[_Grant], now_us: int
) -> list[ItemOutcome]:
    if not fresh:
        return []
    router = context.router
    virtual_shards = {
        grant.command.user_id: router.virtual_shard_of_user(grant.command.user_id) for grant in fresh
    }
    ensure_accounts(connection, virtual_shards, now_us)
    # Lock order of a single grant (engine.service.points_grants): POINTS balances, then debts.
    points_users = sorted({grant.command.user_id for grant in fresh if isinstance(grant.spec, PointsSpec)})
    lock_points_balances(connection, points_users)
    debts = lock_points_debts(connection, points_users)
    paid: dict[int, int] = defaultdict(int)
    credits: dict[tuple[int, Asset], int] = defaultdict(int)
    lots: dict[str, list[object]] = defaultdict(list)
    records: list[TransactionRecord] = []
    for grant in fresh:  # arrival order: a user's first grant pays the debt first
        user_id = grant.command.user_id
        virtual_shard = virtual_shards[user_id]
        transaction_id = ids.new_transaction_id(virtual_shard, now_us)
        posting = Posting()
        spec = grant.spec
        if isinstance(spec, PointsSpec):
            lot_id = ids.new_id("lot", virtual_shard, now_us // 1000)
            split = split_grant(spec.points, debts.get(user_id, 0))
            debts[user_id] = debts.get(user_id, 0) - split.paid_debt
            paid[user_id] += split.paid_debt
            credits[(user_id, Asset.POINTS)] += split.kept
            for column, value in (
                ("lot_id", lot_id),
                ("user_id", user_id),
                ("granted", spec.points),
                ("remaining", split.kept),
                ("expires_at_us", expiry_after_days(now_us, spec.ttl_days)),
                ("granted_at_us", now_us),
                ("expired_at_us", None),
                ("transaction_id", transaction_id),
            ):
                lots[column].append(value)
            post_grant(posting, user_id=user_id, lot_id=lot_id, split=split, source_account=POINTS_ISSUED)
            transaction_type = TransactionType.POINTS_GRANT
        else:
            credits[(user_id, Asset.COINS)] += spec.coins
            post_credit(
                posting, user_id=user_id, asset=Asset.COINS, amount=spec.coins, source_account=COINS_ISSUED
            )
            transaction_type = TransactionType.COINS_GRANT
        records.append(
            TransactionRecord(
                transaction_id=transaction_id,
                user_id=user_id,
                transaction_type=transaction_type,
                entries=posting.entries(),
                now_us=now_us,
                idempotency_key=grant.command.idempotency_key,
                memo=spec.reason,
            )
        )
    for user_id in sorted(paid):
        if paid[user_id]:
            pay_points_debt(connection, user_id, paid[user_id])
    credit_available_many(
        connection,
        [(user, asset, credits[(user, asset)]) for user, asset in sorted(credits, key=_credit_order)],
    )
    insert_lots(connection, lots)
    append_transactions(connection, records)
    # The answers: each item's wallet as of the chunk's commit (balances only, CONTRACT §2).
    wallets = read_balance_wallets(connection, list(virtual_shards), now_us)
    wallet_forms = {user: to_jsonable(wallet) for user, wallet in wallets.items()}
    answers = [stored_answer(record.transaction_id, wallet_forms[record.user_id]) for record in records]
    store_responses(
        connection,
        {
            "user_id": [grant.command.user_id for grant in fresh],
            "idempotency_key": [grant.command.idempotency_key for grant in fresh],
            "response": answers,
        },
    )
    # Each grant's audit row, in the chunk's transaction like a single Issue's (CONTRACT §3 Audit).
    append_audit_events(
        connection,
        [
            mutation_event(
                grant.command.user_id,
                now_us,
                ISSUE_OPERATION,
                grant.command.idempotency_key,
                grant.digest,
                grant.command,
                record,
            )
            for grant, record in zip(fresh, records, strict=True)
        ],
    )
    return [
        ItemOutcome(grant.index, transaction_id=record.transaction_id)
        for grant, record in zip(fresh, records, strict=True)
    ]


def grant_digest(command: IssueCommand, spec: PointsSpec | CoinsSpec) -> str:
    """``payload_digest(ISSUE_OPERATION, command)`` of a grant, from the same JSON document built
    directly (a campaign digests a million of them; tests/unit/test_issue_batch_forms.py holds
    the two equal)."""
    fields: dict[str, object] = (
        {"points": spec.points, "ttl_days": spec.ttl_days, "reason": spec.reason}
        if isinstance(spec, PointsSpec)
        else {"coins": spec.coins, "reason": spec.reason}
    )
    body = {
        "idempotency_key": command.idempotency_key,
        "user_id": command.user_id,
        "spec": {"__type__": type(spec).__name__, **fields},
    }
    text = json.dumps({"operation": ISSUE_OPERATION, "body": body}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def stored_answer(transaction_id: str, wallet_form: object) -> str:
    """``dumps(IssueResult(transaction_id, wallet))`` — the answer a single Issue stores — from the
    wallet's JSON form computed once per user (tests/unit/test_issue_batch_forms.py)."""
    document = {
        "coupons": [],
        "gift_card": None,
        "replayed": False,
        "transaction_id": transaction_id,
        "wallet": wallet_form,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _credit_order(credit: tuple[int, Asset]) -> tuple[int, str]:
    return (credit[0], credit[1].value)
