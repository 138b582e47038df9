"""The audit trail on PostgreSQL and SQLite: after a mixed concurrent run (two engines on the same
shards, group commit and lone transactions, top-ups, charges, captures, voids, refunds, refusals
and replays) every acknowledged mutation has exactly one row naming its caller and nothing else
has one; rows cannot be updated or deleted through SQL; an edited row breaks its user's chain and
Admin.Audit names the user; ListAuditEvents pages by user, charge and caller."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from engine.domain.audit_events import ANONYMOUS_CALLER, NO_ROLE
from engine.domain.commands import (
    CaptureCommand,
    ChargeCommand,
    IssueCommand,
    RefundCommand,
    TopUpSpec,
    VoidCommand,
)
from engine.domain.errors import CofferError
from engine.domain.money import Asset
from engine.security.identity import Caller, Role
from engine.service.audit import audit
from engine.service.audit_trail import AuditEventQuery, acting_as, bound_to_caller, list_audit_events
from engine.service.capture import capture
from engine.service.charge import charge
from engine.service.context import EngineContext
from engine.service.group_commit import GroupCommit, WriteRoute, route_for_id, route_for_user
from engine.service.issue import issue
from engine.service.refund import refund
from engine.service.void import void
from engine.storage.audit_trail import AuditFilter
from engine.storage.schema import audit_events, ledger_transactions
from tests.support.engines import make_context

USERS = tuple(range(101, 109))
CALLERS = (
    Caller("orders-a", Role.ORDER_SERVICE),
    Caller("orders-b", Role.ORDER_SERVICE),
    Caller("till-7", Role.POS, merchant_id="m-1"),
)
OPS = Caller("ops-1", Role.OPS)
WORKERS_PER_ENGINE = 3
ROUNDS_PER_WORKER = 6


@pytest.fixture
def engines(shard_urls: list[str]) -> Iterator[tuple[EngineContext, EngineContext]]:
    """Two engine processes' worth of state (routers, pools) over the same shard databases."""
    first, second = make_context(shard_urls), make_context(shard_urls)
    try:
        yield first, second
    finally:
        first.router.dispose()
        second.router.dispose()


def _deliver(settled: Any) -> None:
    for request in settled:
        future: Future[object] = request.token
        if request.error is not None:
            future.set_exception(request.error)
        else:
            future.set_result(request.result)


@dataclass
class Ledger:
    """What the run was told: acknowledged first executions, replays and refusals by key."""

    acknowledged: dict[tuple[int, str], str] = field(default_factory=dict)
    replayed: set[tuple[int, str]] = field(default_factory=set)
    refused: set[tuple[int, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Runner:
    """Runs one request as the engine does: on the shard's group-commit writer (batched, in a
    savepoint) or alone, acting for the caller either way."""

    def __init__(self, context: EngineContext) -> None:
        self.context = context
        self.group_commit: GroupCommit[Future[object]] = GroupCommit(context.router, _deliver)

    def run(self, caller: Caller, route: WriteRoute | None, work: Callable[[], Any], batched: bool) -> Any:
        acting = bound_to_caller(caller, work)
        if not batched or route is None:
            return acting()
        future: Future[object] = Future()
        self.group_commit.submit(route, acting, future)
        return future.result(timeout=60)


def _record(ledger: Ledger, user_id: int, key: str, caller: Caller, attempt: Callable[[], Any]) -> Any:
    try:
        result = attempt()
    except CofferError:
        with ledger.lock:
            if (user_id, key) not in ledger.acknowledged:
                ledger.refused.add((user_id, key))
        return None
    with ledger.lock:
        if result.replayed:
            ledger.replayed.add((user_id, key))
        else:
            assert (user_id, key) not in ledger.acknowledged, "executed twice"
            ledger.acknowledged[(user_id, key)] = caller.name
    return result


def _worker(runner: Runner, ledger: Ledger, name: str, seed: int) -> None:
    generator = random.Random(seed)
    for round_number in range(ROUNDS_PER_WORKER):
        _one_round(runner, ledger, generator, f"{name}-{round_number}")


def _one_round(runner: Runner, ledger: Ledger, generator: random.Random, prefix: str) -> None:
    context = runner.context
    user = generator.choice(USERS)
    caller = generator.choice(CALLERS)
    batched = generator.random() < 0.7

    def run(route: WriteRoute | None, work: Callable[[], Any]) -> Any:
        return runner.run(caller, route, work, batched)

    top_up = IssueCommand(f"{prefix}-top", user, TopUpSpec(5_000, Asset.CASH, "alipay", f"{prefix}-txn"))
    for _sent in range(2):  # the second is a replay: answered again, no second row
        _record(
            ledger,
            user,
            top_up.idempotency_key,
            caller,
            lambda: run(route_for_user(context, user), lambda: issue(context, top_up)),
        )
    # A refusal: far more than the wallet holds; no row, no ledger trace.
    too_much = ChargeCommand(f"{prefix}-poor", user, f"{prefix}-o-poor", "m-1", "", 10**12)
    _record(
        ledger,
        user,
        too_much.idempotency_key,
        caller,
        lambda: run(route_for_user(context, user), lambda: charge(context, too_much)),
    )
    hold = generator.random() < 0.5
    order = ChargeCommand(f"{prefix}-ch", user, f"{prefix}-o", "m-1", "", 1_000, authorize_only=hold)
    paid = _record(
        ledger,
        user,
        order.idempotency_key,
        caller,
        lambda: run(route_for_user(context, user), lambda: charge(context, order)),
    )
    if paid is None:
        return
    route = route_for_id(context, paid.charge_id)
    if hold and generator.random() < 0.5:
        cancel = VoidCommand(f"{prefix}-void", paid.charge_id)
        _record(
            ledger,
            user,
            cancel.idempotency_key,
            caller,
            lambda: run(route, lambda: void(context, cancel)),
        )
        return
    if hold:
        take = CaptureCommand(f"{prefix}-cap", paid.charge_id, 0)
        _record(
            ledger, user, take.idempotency_key, caller, lambda: run(route, lambda: capture(context, take))
        )
    back = RefundCommand(f"{prefix}-rf", paid.charge_id, 300)
    _record(ledger, user, back.idempotency_key, caller, lambda: run(route, lambda: refund(context, back)))
    # Refunding more than was captured: refused, no row.
    greedy = RefundCommand(f"{prefix}-rf-greedy", paid.charge_id, 10**9)
    _record(ledger, user, greedy.idempotency_key, caller, lambda: run(route, lambda: refund(context, greedy)))


def _rows(context: EngineContext) -> list[Any]:
    rows: list[Any] = []
    for shard in context.router.shards:
        with shard.engine.connect() as connection:
            rows += connection.execute(select(audit_events)).all()
    return rows


def _mixed_run(engines: tuple[EngineContext, EngineContext]) -> Ledger:
    ledger = Ledger()
    runners = [Runner(context) for context in engines]
    threads = [
        threading.Thread(target=_worker, args=(runner, ledger, f"e{index}w{worker}", index * 100 + worker))
        for index, runner in enumerate(runners)
        for worker in range(WORKERS_PER_ENGINE)
    ]
    errors: list[BaseException] = []

    def guard(thread: threading.Thread) -> None:
        try:
            thread.run()
        except BaseException as error:
            errors.append(error)

    wrapped = [threading.Thread(target=guard, args=(thread,)) for thread in threads]
    try:
        for thread in wrapped:
            thread.start()
        for thread in wrapped:
            thread.join(timeout=300)
    finally:
        for runner in runners:
            runner.group_commit.stop()
    assert errors == []
    return ledger


def test_every_acknowledged_mutation_has_exactly_one_row_naming_its_caller(
    engines: tuple[EngineContext, EngineContext],
) -> None:
    ledger = _mixed_run(engines)
    context = engines[0]
    rows = _rows(context)
    by_key: dict[tuple[int, str], list[Any]] = {}
    for row in rows:
        by_key.setdefault((row.user_id, row.idempotency_key), []).append(row)
    assert ledger.acknowledged and ledger.refused and ledger.replayed
    assert set(by_key) == set(ledger.acknowledged)
    for key, caller in ledger.acknowledged.items():
        (row,) = by_key[key]
        assert row.caller == caller
        assert row.outcome == "ok" and row.reason == ""
        assert len(row.request_digest) == 64
    # Refused requests left no ledger trace (and no row, above).
    for user_id, key in ledger.refused:
        with context.router.for_user(user_id).engine.connect() as connection:
            count = connection.execute(
                select(func.count())
                .select_from(ledger_transactions)
                .where(ledger_transactions.c.user_id == user_id, ledger_transactions.c.idempotency_key == key)
            ).scalar_one()
        assert count == 0, key
    # Both engines appended to the same users' chains: no fork, every chain intact.
    report = audit(context)
    assert report.ok, report
    assert sum(shard.audit_events_checked for shard in report.shards) == len(rows)
    # Rows name what they concern.
    charges = [row for row in rows if row.rpc == "Charge"]
    assert charges and all(row.charge_id and row.order_id and row.amount == 1_000 for row in charges)
    assert all(row.merchant_id == "m-1" for row in charges)
    refunds = [row for row in rows if row.rpc == "Refund"]
    assert refunds and all(row.charge_id and row.transaction_id.startswith("rf") for row in refunds)


def test_a_request_without_a_caller_is_recorded_as_anonymous(engine_context: EngineContext) -> None:
    issue(engine_context, IssueCommand("anon", 42, TopUpSpec(100, Asset.CASH, "alipay", "anon")))
    (row,) = _rows(engine_context)
    assert (row.caller, row.role, row.user_id, row.seq, row.amount) == (ANONYMOUS_CALLER, NO_ROLE, 42, 1, 100)


def _seed(context: EngineContext) -> str:
    with acting_as(OPS):
        issue(context, IssueCommand("seed-top", 42, TopUpSpec(9_000, Asset.CASH, "alipay", "seed")))
        issue(context, IssueCommand("seed-top-2", 43, TopUpSpec(9_000, Asset.CASH, "alipay", "seed")))
    with acting_as(CALLERS[0]):
        paid = charge(context, ChargeCommand("seed-ch", 42, "seed-o", "m-1", "", 1_000))
        for number in range(3):
            refund(context, RefundCommand(f"seed-rf-{number}", paid.charge_id, 100))
    return paid.charge_id


def test_rows_cannot_be_updated_or_deleted_through_sql(engine_context: EngineContext) -> None:
    _seed(engine_context)
    shard = engine_context.router.for_user(42)
    for statement in (
        "UPDATE audit_events SET amount = 1 WHERE user_id = 42",
        "DELETE FROM audit_events WHERE user_id = 42",
    ):
        with pytest.raises(DBAPIError, match="immutable"), shard.engine.begin() as connection:
            connection.execute(text(statement))
    if shard.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="immutable"), shard.engine.begin() as connection:
            connection.execute(text("TRUNCATE audit_events"))
    assert audit(engine_context).ok


def test_an_edited_amount_breaks_the_chain_and_audit_names_the_user(engine_context: EngineContext) -> None:
    _seed(engine_context)
    shard = engine_context.router.for_user(42)
    with shard.engine.begin() as connection:
        # Tampering as the database owner would: switch the guard off, edit, switch it back on.
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_immutable"))
            connection.execute(text("UPDATE audit_events SET amount = 1 WHERE user_id = 42 AND seq = 2"))
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_immutable"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("UPDATE audit_events SET amount = 1 WHERE user_id = 42 AND seq = 2"))
    report = audit(engine_context)
    assert not report.ok
    (broken,) = [chain for shard_report in report.shards for chain in shard_report.broken_chains]
    assert (broken.user_id, broken.seq) == (42, 2)
    assert "edited" in broken.problem
    assert any(
        "user 42" in violation.detail
        for shard_report in report.shards
        for violation in shard_report.violations
    )
    # User 43's chain is untouched and not reported.
    assert all(chain.user_id != 43 for shard_report in report.shards for chain in shard_report.broken_chains)


def _all_pages(context: EngineContext, where: AuditFilter, page_size: int) -> list[Any]:
    seen: list[Any] = []
    token = ""
    for _ in range(100):
        page = list_audit_events(context, AuditEventQuery(where, page_size, token))
        assert len(page.events) <= page_size
        seen += page.events
        token = page.next_page_token
        if not token:
            return seen
    raise AssertionError("paging did not end")


def _newest_first(events: list[Any]) -> bool:
    keys = [(e.stored.event.at_us, e.stored.event.user_id, e.stored.event.seq, e.shard) for e in events]
    return keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)


def test_list_audit_events_pages_by_user_charge_and_caller(engine_context: EngineContext) -> None:
    charge_id = _seed(engine_context)
    by_user = _all_pages(engine_context, AuditFilter(user_id=42), 2)
    assert [listed.stored.event.idempotency_key for listed in by_user] == [
        "seed-rf-2",
        "seed-rf-1",
        "seed-rf-0",
        "seed-ch",
        "seed-top",
    ]
    by_charge = _all_pages(engine_context, AuditFilter(charge_id=charge_id), 1)
    assert [listed.stored.event.rpc for listed in by_charge] == ["Refund"] * 3 + ["Charge"]
    by_caller = _all_pages(engine_context, AuditFilter(caller=OPS.name), 1)
    assert {listed.stored.event.user_id for listed in by_caller} == {42, 43}  # both shards
    assert all(listed.stored.event.role == "ops" for listed in by_caller)
    everything = _all_pages(engine_context, AuditFilter(), 3)
    assert len(everything) == 6 and _newest_first(everything)
    newest = everything[0].stored.event.at_us
    assert _all_pages(engine_context, AuditFilter(from_us=newest), 5) == everything[:1]
    assert _all_pages(engine_context, AuditFilter(order_id="seed-o"), 5) == by_charge
    with pytest.raises(CofferError):
        list_audit_events(engine_context, AuditEventQuery(AuditFilter(), 201))
    with pytest.raises(CofferError):
        list_audit_events(engine_context, AuditEventQuery(AuditFilter(), 10, "not-a-token"))
