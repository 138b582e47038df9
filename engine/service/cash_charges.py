"""Cash-only charges, applied many at a time with set-based statements.

A charge paid from the wallet's cash alone (no coupon, points, coins, gift card or items,
captured at once, earning no points) is the hot path of the platform. A group-commit writer
(engine.service.group_commit) hands every such charge queued for its shard to
:func:`charge_cash`, which applies them in the batch's transaction with one statement per table
instead of nine per charge; a lone cash charge (engine.service.charge) is the same call with one
item in its own transaction. Each charge still gets exactly the answer it would get alone:

* its key is claimed in the transaction of its effect; a key claimed before answers as the
  single path answers it (engine.service.idempotent.answer_claimed_before);
* the checks run in the single path's order — frozen wallet, a live charge for the order,
  enough cash — and in arrival order, so a user's second charge sees the first one's debit;
* a refused charge leaves nothing behind: its key claim is dropped and nothing else was
  written for it;
* the users' CASH rows are locked in user order (the order every batch locks in) before they
  are read, and the debits are one conditional ``UPDATE`` whose condition is the single
  debit's (engine.storage.balances.debit_as_decided_query); the answers' balances are the ones
  decided from the locked rows, and PostgreSQL fails the transaction unless the debits leave
  exactly those (SQLite: the call compares them and the transaction is rerun), so no answer
  can name a balance that was not committed.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from engine.domain import ids
from engine.domain.charge_plan import ChargePlan, plan_charge
from engine.domain.charge_status import ChargeStatus
from engine.domain.commands import ChargeCommand
from engine.domain.errors import CofferError, require
from engine.domain.ledger import Posting, TransactionType
from engine.domain.leg_kind import LegKind
from engine.domain.money import Asset
from engine.domain.results import BalanceView, ChargeResult, WalletView
from engine.domain.serialization import dumps, payload_digest
from engine.legs import LegScope
from engine.legs.wallet import WalletAssetHandler
from engine.security.identity import Caller
from engine.service.audit_trail import acting_as
from engine.service.charge_parts import (
    charge_memo,
    leg_rows,
    legs_of,
    new_charge_row,
    order_already_charged,
)
from engine.service.context import EngineContext
from engine.service.group_commit import Joinable
from engine.service.idempotent import acknowledged, answer_claimed_before, key_in_use
from engine.storage.accounts import frozen_account
from engine.storage.balances import insufficient_funds
from engine.storage.cash_charges import CashChargeReads, read_for_cash_charges, write_cash_charges
from engine.storage.charges import (
    NewCharge,
    is_live_order_conflict,
)
from engine.storage.idempotency import claim_columns
from engine.storage.ledger import TransactionRecord
from engine.storage.outcomes import write_outcomes
from engine.storage.unit_of_work import (
    BatchTransaction,
    ConcurrentChange,
    RequestOutcome,
    UnitOfWork,
    joined_batch,
    run_transaction,
)

__all__ = [
    "CHARGE_OPERATION",
    "CashCharge",
    "cash_charge",
    "charge_cash",
    "charge_one_cash",
    "is_cash_only",
    "joinable_cash_charge",
]

CHARGE_OPERATION = "Charge"
#: Charges one call applies: a group-commit batch holds at most 256 requests.
MAX_CASH_CHARGES = 256

_CASH = WalletAssetHandler(Asset.CASH)

#: One charge's outcome: its answer, or the refusal it gets alone.
CashOutcome = ChargeResult | CofferError


@dataclass(frozen=True)
class CashCharge:
    """A validated cash-only charge, the caller it acts for (its audit row names it) and its
    payload digest."""

    command: ChargeCommand
    caller: Caller | None
    digest: str

    @property
    def key(self) -> tuple[int, str]:
        return (self.command.user_id, self.command.idempotency_key)


def is_cash_only(context: EngineContext, command: ChargeCommand) -> bool:
    """Paid from cash alone and captured at once, earning nothing: what :func:`charge_cash` takes."""
    return (
        not command.coupon_ids
        and not command.gift_card_codes
        and not command.items
        and command.points == 0
        and command.coins == 0
        and not command.authorize_only
        and context.settings.points_earn_bps == 0
    )


def cash_charge(command: ChargeCommand, caller: Caller | None) -> CashCharge:
    return CashCharge(command, caller, payload_digest(CHARGE_OPERATION, command))


@dataclass(frozen=True, eq=False)
class _CashChargesOf:
    """:func:`charge_cash` for one engine context, as a group-commit ``together``: equal for the
    same context, so the writer joins neighbouring cash charges into one call."""

    context: EngineContext

    def __call__(self, items: Sequence[Any]) -> Sequence[Any]:
        return charge_cash(self.context, items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CashChargesOf) and other.context is self.context

    def __hash__(self) -> int:
        return id(self.context)


def joinable_cash_charge(
    context: EngineContext, command: ChargeCommand, caller: Caller | None, answer: Any
) -> Joinable:
    """The :class:`Joinable` of a validated cash-only charge (``answer`` turns its
    :class:`ChargeResult` into what the caller awaits)."""
    item = cash_charge(command, caller)
    return Joinable(together=_CashChargesOf(context), item=item, key=item.key, answer=answer)


def charge_cash(context: EngineContext, items: Sequence[CashCharge]) -> list[CashOutcome]:
    """Apply ``items`` (one shard's, no ``(user, key)`` twice) in arrival order, inside the
    group-commit batch this thread runs (or a transaction of their own): one outcome per item,
    refusals included; anything unexpected raises."""
    return _run(context, items, raise_refusal=False)


def charge_one_cash(context: EngineContext, item: CashCharge) -> ChargeResult:
    """One cash charge, as a single request: its refusal is raised, and takes its savepoint (or
    its transaction) with it — a refused request of a batch leaves nothing for its neighbours to
    commit."""
    (outcome,) = _run(context, [item], raise_refusal=True)
    if isinstance(outcome, CofferError):  # pragma: no cover - raised inside _run
        raise outcome
    return outcome


def _run(context: EngineContext, items: Sequence[CashCharge], *, raise_refusal: bool) -> list[CashOutcome]:
    require(0 < len(items) <= MAX_CASH_CHARGES, f"1..{MAX_CASH_CHARGES} cash charges per call")
    require(len({item.key for item in items}) == len(items), "no (user, key) twice in one call")
    router = context.router
    shard = router.for_user(items[0].command.user_id)
    require(
        all(router.for_user(item.command.user_id) is shard for item in items), "one shard's charges per call"
    )

    def apply(
        connection: Connection, batch: BatchTransaction | None, *, in_savepoint: bool = False
    ) -> list[CashOutcome]:
        # Chain heads locked in a savepoint would be released by its rollback: only a run
        # straight in the batch's transaction locks them with its writes.
        heads_batch = batch if batch is not None and not in_savepoint else None
        outcomes = _apply(context, connection, batch, items, context.now_us(), heads_batch)
        if raise_refusal and isinstance(outcomes[0], CofferError):
            raise outcomes[0]
        return outcomes

    batch = joined_batch(shard.engine)
    if batch is not None and not raise_refusal:
        # Joined by the writer: straight in the batch's transaction. Its refusals are answers,
        # never raised, and anything raised fails the whole batch, so no savepoint is needed.
        return apply(batch.connection, batch)
    if batch is not None:
        # One request's work inside a batch: a savepoint, as a single request's unit of work.
        with batch.savepoint() as connection:
            return apply(connection, batch, in_savepoint=True)

    def attempt() -> list[CashOutcome]:
        with UnitOfWork(shard.engine) as unit:
            outcomes = apply(unit.connection, None)
            unit.commit()
            return outcomes

    return run_transaction(attempt, attempts=context.settings.transaction_attempts)


@dataclass
class _Accepted:
    """A charge that passed its checks, with what its rows are built from."""

    index: int
    item: CashCharge
    plan: ChargePlan
    charge_id: str = ""
    transaction_id: str = ""


@dataclass(frozen=True)
class _Decision:
    """What the checks left: the accepted charges (arrival order), the keys of the refused ones
    (released: a refusal leaves no claim behind) and the wallets read for them (the answers are
    built from these)."""

    accepted: list[_Accepted]
    released: list[tuple[int, str]]
    wallets: dict[int, WalletView]
    #: Each user's CASH ``available`` once the accepted charges are taken: what the debits
    #: must leave (engine.storage.balances.debit_as_decided_query), and the answers' start.
    cash_after: dict[int, int]


def _apply(
    context: EngineContext,
    connection: Connection,
    batch: BatchTransaction | None,
    items: Sequence[CashCharge],
    now_us: int,
    heads_batch: BatchTransaction | None,
) -> list[CashOutcome]:
    """``heads_batch``: the batch whose transaction this run is straight in (no savepoint); the
    users' audit chain heads are locked with the reads and handed to it, and the writes go with
    its COMMIT: the batch chains the audit rows after those heads, and the whole run costs one
    round trip of its own."""
    outcomes: list[CashOutcome | None] = [None] * len(items)
    reads = read_for_cash_charges(
        connection,
        claim_columns(
            [(*item.key, item.digest) for item in items], operation=CHARGE_OPERATION, now_us=now_us
        ),
        [(c.user_id, c.merchant_id, c.order_id) for c in (item.command for item in items)],
        now_us,
        lock_heads=heads_batch is not None,
    )
    if heads_batch is not None:
        heads_batch.heads_locked(reads.heads)
    _answer_claimed_before(batch, items, reads, outcomes)
    decision = _decide(context, items, reads, outcomes)
    written = _write(context, connection, decision, outcomes, now_us, heads_batch)
    if batch is not None:
        for outcome in written:
            batch.defer(outcome)
    else:
        write_outcomes(connection, written)
    done = [outcome for outcome in outcomes if outcome is not None]
    require(len(done) == len(items), "every cash charge has its outcome")
    return done


def _answer_claimed_before(
    batch: BatchTransaction | None,
    items: Sequence[CashCharge],
    reads: CashChargeReads,
    outcomes: list[CashOutcome | None],
) -> None:
    """Replays and reuses: the keys of ``items`` that an earlier request claimed."""
    for index, item in enumerate(items):
        if item.key in reads.claimed:
            continue
        user_id, key = item.key
        claim = reads.earlier.get(item.key)
        if claim is None:  # its claimer rolled back after our insert met its claim: retry
            outcomes[index] = key_in_use(key)
            continue
        try:
            outcomes[index] = answer_claimed_before(
                claim, user_id=user_id, key=key, digest=item.digest, result_type=ChargeResult, batch=batch
            )
        except CofferError as refusal:
            outcomes[index] = refusal


def _decide(
    context: EngineContext,
    items: Sequence[CashCharge],
    reads: CashChargeReads,
    outcomes: list[CashOutcome | None],
) -> _Decision:
    """The single path's checks, in its order and in arrival order: frozen wallet, a live charge
    for the order, enough cash."""
    wallets = reads.wallets
    live = set(reads.live)
    cash = {user: _available(wallet, Asset.CASH) for user, wallet in wallets.items()}
    accepted: list[_Accepted] = []
    refused: list[int] = []
    for index, item in enumerate(items):
        if item.key not in reads.claimed:
            continue
        command = item.command
        user_id = command.user_id
        order = (user_id, command.merchant_id, command.order_id)
        plan = plan_charge(
            amount=command.amount,
            coupon_discounts=(),
            points=0,
            coins=0,
            gift_card_available=(),
            policy=context.points_policy,
        )
        refusal: CofferError | None = None
        if wallets[user_id].frozen:
            refusal = frozen_account(user_id)
        elif order in live:
            refusal = order_already_charged(command)
        elif cash[user_id] < plan.cash_amount:
            refusal = insufficient_funds(Asset.CASH, plan.cash_amount)
        if refusal is not None:
            outcomes[index] = refusal
            refused.append(index)
            continue
        cash[user_id] -= plan.cash_amount
        live.add(order)
        accepted.append(_Accepted(index, item, plan))
    return _Decision(accepted, [items[index].key for index in refused], wallets, cash)


def _write(
    context: EngineContext,
    connection: Connection,
    decision: _Decision,
    outcomes: list[CashOutcome | None],
    now_us: int,
    heads_batch: BatchTransaction | None,
) -> list[RequestOutcome]:
    """The refused charges' claims released; the accepted charges' rows — charges, one debit per
    user, legs, ledger — one statement per table, in the single path's order (the charge row,
    then the balance); their answers and stored outcomes."""
    accepted = decision.accepted
    router = context.router
    rows: list[NewCharge] = []
    legs: list[tuple[str, dict[str, object]]] = []
    records: list[TransactionRecord] = []
    debits: dict[int, int] = defaultdict(int)
    for charge in accepted:
        command = charge.item.command
        virtual_shard = router.virtual_shard_of_user(command.user_id)
        charge.charge_id = ids.new_id("ch", virtual_shard, now_us // 1000)
        charge.transaction_id = ids.new_transaction_id(virtual_shard, now_us)
        rows.append(
            new_charge_row(
                command,
                charge.plan,
                charge_id=charge.charge_id,
                transaction_id=charge.transaction_id,
                now_us=now_us,
                hold_expires_at_us=None,
            )
        )
        moves = legs_of(charge.plan)
        require([move.kind for move in moves] == [LegKind.CASH], "a cash-only charge has one cash leg")
        posting = Posting()
        scope = LegScope(connection, command.user_id, charge.charge_id, command.merchant_id, now_us, posting)
        _CASH.post_taken(scope, moves[0])
        legs += [(charge.charge_id, row) for row in leg_rows(moves, hold=False)]
        debits[command.user_id] += charge.plan.cash_amount
        records.append(
            TransactionRecord(
                transaction_id=charge.transaction_id,
                user_id=command.user_id,
                transaction_type=TransactionType.CHARGE,
                entries=posting.entries(),
                now_us=now_us,
                idempotency_key=command.idempotency_key,
                charge_id=charge.charge_id,
                memo=charge_memo(command),
            )
        )
    try:
        write_cash_charges(
            connection,
            released=decision.released,
            charges=rows,
            debits=sorted(debits.items()),
            available_after={user: decision.cash_after[user] for user in debits},
            legs=legs,
            records=records,
            batch=heads_batch,
        )
    except IntegrityError as error:
        if is_live_order_conflict(error):
            # A twin for one of these orders committed after the look-up: rerun, and the look-up
            # sees it (the unique index made this statement wait for it). Deferred to a batch's
            # COMMIT, the same refusal fails the batch, whose requests are rerun one by one. (A
            # twin has the same user, whose CASH row this transaction locked before the look-up,
            # so either is only reachable for a user without one.)
            raise ConcurrentChange("an order got a live charge since it was looked up") from error
        raise
    return _answers(decision, outcomes, now_us) if accepted else []


def _answers(decision: _Decision, outcomes: list[CashOutcome | None], now_us: int) -> list[RequestOutcome]:
    """Each accepted charge's answer: its wallet as it stood right after its own debit (the
    balance after the whole call, plus what the user's later charges in it took)."""
    cash = dict(decision.cash_after)
    written: list[RequestOutcome] = []
    for charge in reversed(decision.accepted):
        command = charge.item.command
        user_id = command.user_id
        result = ChargeResult(
            charge_id=charge.charge_id,
            status=ChargeStatus.CAPTURED,
            breakdown=charge.plan.breakdown(),
            wallet=_with_available(decision.wallets[user_id], Asset.CASH, cash[user_id]),
            transaction_id=charge.transaction_id,
        )
        cash[user_id] += charge.plan.cash_amount
        outcomes[charge.index] = result
        with acting_as(charge.item.caller):
            written.append(
                acknowledged(
                    user_id,
                    now_us,
                    CHARGE_OPERATION,
                    command.idempotency_key,
                    charge.item.digest,
                    command,
                    result,
                    dumps(result),
                )
            )
    written.reverse()  # audit rows in arrival order: a user's chain follows its charges
    return written


def _available(wallet: WalletView, asset: Asset) -> int:
    for balance in wallet.balances:
        if balance.asset == asset.value:
            return balance.available
    return 0


def _with_available(wallet: WalletView, asset: Asset, available: int) -> WalletView:
    return dataclasses.replace(
        wallet,
        balances=tuple(
            BalanceView(balance.asset, available, balance.held) if balance.asset == asset.value else balance
            for balance in wallet.balances
        ),
    )
