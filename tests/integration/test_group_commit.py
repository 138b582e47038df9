"""Group commit (engine.service.group_commit) on real PostgreSQL and on SQLite: each request of a
batch gets exactly its own answer, one user's requests apply in arrival order, an unexpected
failure reruns the batch one by one, and nothing is doubled."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.domain.commands import ChargeCommand, FreezeAccountCommand, IssueCommand, TopUpSpec
from engine.domain.errors import CofferError, Reason
from engine.domain.money import Asset
from engine.domain.results import ChargeResult
from engine.service import cash_charges as service_cash_charges
from engine.service.account_admin import set_account_frozen
from engine.service.audit import audit
from engine.service.charge import charge, charge_joinable
from engine.service.context import EngineContext
from engine.service.group_commit import (
    GroupCommit,
    Joinable,
    PendingWrite,
    ShardWriter,
    WriteRoute,
    batch_order,
    route_for_id,
    route_for_user,
)
from engine.service.issue import issue
from engine.service.queries import get_wallet
from engine.storage import cash_charges as storage_cash_charges
from engine.storage import outcomes as storage_outcomes
from engine.storage import unit_of_work
from engine.storage.unit_of_work import BatchTransaction
from tests.support.coupons import claim_one, template
from tests.support.wallets import available, transaction_count

# Even users: with two shards and the default virtual shards they all live on shard 0.
GOOD, POOR, FROZEN, COUPON_OWNER, REPLAYER = 2, 4, 6, 8, 10


def _top_up(context: EngineContext, user_id: int, amount: int) -> None:
    issue(context, IssueCommand(f"top-{user_id}", user_id, TopUpSpec(amount, Asset.CASH, "alipay", "x")))


@pytest.fixture(params=["alone", "joined"])
def form(request: pytest.FixtureRequest) -> str:
    """How the writer gets a charge: as work to run alone, or (as the gRPC handler submits a
    cash-only charge) also joinable with its neighbours (engine.service.cash_charges)."""
    return str(request.param)


def _joinable(context: EngineContext, command: ChargeCommand, form: str) -> Joinable | None:
    return charge_joinable(context, command, None, lambda result: result) if form == "joined" else None


def _pending(context: EngineContext, command: ChargeCommand, form: str = "alone") -> PendingWrite[str]:
    return PendingWrite(
        route_for_user(context, command.user_id),
        lambda: charge(context, command),
        command.idempotency_key,
        joinable=_joinable(context, command, form),
    )


def _writer(context: EngineContext) -> ShardWriter[str]:
    shard = context.router.for_user(GOOD)
    return ShardWriter(shard, lambda _settled: None)


def _run(context: EngineContext, batch: list[PendingWrite[str]]) -> ShardWriter[str]:
    """``batch`` as exactly one batch of shard 0's writer (driven directly, so its composition
    is certain); the writer is stopped afterwards."""
    writer = _writer(context)
    try:
        writer.run_batch(batch)
    finally:
        writer.stop()
    return writer


def _outcome(request: PendingWrite[Any]) -> str:
    if request.error is not None:
        assert isinstance(request.error, CofferError), request.error
        return request.error.reason.label
    result = request.result
    assert isinstance(result, ChargeResult)
    return "replayed" if result.replayed else "ok"


def test_one_batch_gives_each_request_its_own_answer(engine_context: EngineContext, form: str) -> None:
    context = engine_context
    for user_id in (GOOD, POOR, FROZEN, COUPON_OWNER, REPLAYER):
        _top_up(context, user_id, 1_000 if user_id != POOR else 100)
    set_account_frozen(context, FreezeAccountCommand("freeze", FROZEN, True, "risk review", "ops-1"))
    coupon_id = claim_one(context, COUPON_OWNER, template(context, amount_off=100, min_spend=100))
    coupons = (coupon_id,)
    earlier = charge(context, ChargeCommand("paid-before", REPLAYER, "o-before", "m", "", 50))

    batch = [
        _pending(context, ChargeCommand("good", GOOD, "o-good", "m", "", 300), form),
        _pending(context, ChargeCommand("overdraft", POOR, "o-poor", "m", "", 500), form),
        _pending(context, ChargeCommand("paid-before", REPLAYER, "o-before", "m", "", 50), form),
        _pending(context, ChargeCommand("paid-before", REPLAYER, "o-other", "m", "", 70), form),
        _pending(context, ChargeCommand("frozen", FROZEN, "o-frozen", "m", "", 10), form),
        _pending(
            context, ChargeCommand("coupon-1", COUPON_OWNER, "o-c1", "m", "", 400, coupon_ids=coupons), form
        ),
        _pending(
            context, ChargeCommand("coupon-2", COUPON_OWNER, "o-c2", "m", "", 400, coupon_ids=coupons), form
        ),
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (1, 0)
    assert [_outcome(request) for request in batch] == [
        "ok",
        Reason.INSUFFICIENT_FUNDS.label,
        "replayed",
        Reason.IDEMPOTENCY_KEY_REUSED.label,
        Reason.ACCOUNT_FROZEN.label,
        "ok",
        Reason.COUPON_ALREADY_USED.label,
    ]
    replay = batch[2].result
    assert isinstance(replay, ChargeResult) and replay.charge_id == earlier.charge_id
    good = batch[0].result
    assert isinstance(good, ChargeResult) and available(good.wallet) == 700
    assert available(get_wallet(context, GOOD)) == 700
    assert available(get_wallet(context, POOR)) == 100
    assert available(get_wallet(context, FROZEN)) == 1_000
    assert available(get_wallet(context, REPLAYER)) == 950
    assert available(get_wallet(context, COUPON_OWNER)) == 1_000 - 300
    assert transaction_count(context, REPLAYER, "CHARGE") == 1
    assert audit(context).ok


def test_a_retry_in_the_same_batch_as_its_original_replays_it(
    engine_context: EngineContext, form: str
) -> None:
    """The answers and audit rows of a batch are written together just before its COMMIT, so a
    retry that lands in the same batch as its original must still replay it — and a refused
    request must leave neither answer nor audit row behind for its retry to find."""
    context = engine_context
    _top_up(context, GOOD, 1_000)
    _top_up(context, POOR, 100)
    batch = [
        _pending(context, ChargeCommand("fresh", GOOD, "o-fresh", "m", "", 300), form),
        _pending(context, ChargeCommand("fresh", GOOD, "o-fresh", "m", "", 300), form),
        _pending(context, ChargeCommand("fresh", GOOD, "o-fresh-2", "m", "", 300), form),
        _pending(context, ChargeCommand("too-much", POOR, "o-poor", "m", "", 500), form),
        _pending(context, ChargeCommand("too-much", POOR, "o-poor", "m", "", 60), form),
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (1, 0)
    assert [_outcome(request) for request in batch] == [
        "ok",
        "replayed",
        Reason.IDEMPOTENCY_KEY_REUSED.label,
        Reason.INSUFFICIENT_FUNDS.label,
        "ok",  # the refusal rolled its key back, so the same key with a payload that fits applies
    ]
    first, retry = batch[0].result, batch[1].result
    assert isinstance(first, ChargeResult) and isinstance(retry, ChargeResult)
    assert (retry.charge_id, retry.transaction_id) == (first.charge_id, first.transaction_id)
    assert available(get_wallet(context, GOOD)) == 700
    assert available(get_wallet(context, POOR)) == 40
    later = charge(context, ChargeCommand("fresh", GOOD, "o-fresh", "m", "", 300))
    assert later.replayed and later.charge_id == first.charge_id  # the stored answer committed
    with context.router.for_user(GOOD).engine.connect() as connection:
        rows = connection.execute(
            text("SELECT user_id, idempotency_key FROM audit_events WHERE rpc = 'Charge' ORDER BY user_id")
        ).all()
    assert [tuple(row) for row in rows] == [(GOOD, "fresh"), (POOR, "too-much")]
    assert audit(context).ok


def test_an_unexpected_failure_reruns_the_batch_one_by_one(engine_context: EngineContext, form: str) -> None:
    context = engine_context
    _top_up(context, GOOD, 1_000)

    def broken() -> object:
        # What a lost connection or a bug looks like to the writer: not a refusal.
        raise RuntimeError("boom")

    batch = [
        _pending(context, ChargeCommand("a", GOOD, "o-a", "m", "", 100), form),
        PendingWrite(route_for_user(context, GOOD), broken, "broken"),
        _pending(context, ChargeCommand("b", GOOD, "o-b", "m", "", 2_000), form),
        _pending(context, ChargeCommand("c", GOOD, "o-c", "m", "", 200), form),
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (0, 1)
    assert _outcome(batch[0]) == "ok" and _outcome(batch[3]) == "ok"
    assert isinstance(batch[1].error, RuntimeError)
    assert _outcome(batch[2]) == Reason.INSUFFICIENT_FUNDS.label
    assert available(get_wallet(context, GOOD)) == 700
    assert transaction_count(context, GOOD, "CHARGE") == 2
    assert audit(context).ok


def test_a_failed_commit_is_rerun_and_nothing_doubles(pg_context: EngineContext, form: str) -> None:
    """The batch's connection dies under it (as pg_terminate_backend does): the rerun opens its
    own transactions and every request is applied exactly once."""
    context = pg_context
    _top_up(context, GOOD, 1_000)
    writer = _writer(context)

    def kill_my_connection() -> object:
        connection = writer._connection  # the test reaches for the held connection
        assert connection is not None
        with context.router.for_user(GOOD).engine.connect() as other:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return None

    batch = [
        _pending(context, ChargeCommand("a", GOOD, "o-a", "m", "", 100), form),
        _pending(context, ChargeCommand("b", GOOD, "o-b", "m", "", 200), form),
    ]
    killer = PendingWrite(route_for_user(context, GOOD), kill_my_connection, "killer")
    try:
        writer.run_batch([batch[0], killer, batch[1]])
    finally:
        writer.stop()
    assert writer.batches_rerun == 1
    assert [_outcome(request) for request in batch] == ["ok", "ok"]
    assert available(get_wallet(context, GOOD)) == 700
    assert transaction_count(context, GOOD, "CHARGE") == 2
    assert audit(context).ok


def test_batch_order_sorts_by_user_and_keeps_each_users_arrival_order(engine_context: EngineContext) -> None:
    def request(user_id: int | None, token: str) -> PendingWrite[str]:
        route = route_for_user(engine_context, user_id) if user_id is not None else None
        if route is None:
            route = route_for_user(engine_context, GOOD)
            route = type(route)(route.shard, None)
        return PendingWrite(route, lambda: None, token)

    batch = [request(9, "9a"), request(3, "3a"), request(9, "9b"), request(None, "fence"), request(1, "1a")]
    assert [item.token for item in batch_order(batch)] == ["3a", "9a", "9b", "fence", "1a"]

    # A request that names a charge takes its place among the charge's user's requests, in
    # arrival order; a charge id the writer could not place (not found) stays a fence.
    def naming(charge_id: str, token: str) -> PendingWrite[str]:
        route = route_for_user(engine_context, GOOD)
        return PendingWrite(type(route)(route.shard, None, charge_id), lambda: None, token)

    batch = [request(9, "9a"), naming("c-of-3", "capture-3"), request(3, "3a"), naming("unknown", "fence")]
    batch += [request(1, "1a"), naming("c-of-9", "refund-9"), request(9, "9b")]
    owners = {"c-of-3": 3, "c-of-9": 9}
    assert [item.token for item in batch_order(batch, owners)] == [
        "capture-3",
        "3a",
        "9a",
        "fence",
        "1a",
        "refund-9",
        "9b",
    ]


def test_the_writer_runs_a_request_naming_a_charge_among_its_users_requests(
    engine_context: EngineContext,
) -> None:
    """A capture, void or refund names a charge, not its user: the writer looks the user up
    before it orders the batch, so the batch still locks users in ascending order."""
    context = engine_context
    _top_up(context, GOOD, 1_000)
    paid = charge(context, ChargeCommand("paid", GOOD, "o-paid", "m", "", 100))
    by_charge = route_for_id(context, paid.charge_id)
    assert by_charge is not None and by_charge.user_id is None
    shard = by_charge.shard
    ran: list[str] = []

    def request(route: WriteRoute, token: str) -> PendingWrite[str]:
        return PendingWrite(route, lambda: ran.append(token), token)

    writer = ShardWriter(shard, lambda _settled: None)
    try:
        writer.run_batch(
            [
                request(WriteRoute(shard, GOOD + 7), "after"),
                request(by_charge, "by-charge"),
                request(WriteRoute(shard, GOOD + 1), "between"),
                request(WriteRoute(shard, GOOD), "same-user"),
            ]
        )
    finally:
        writer.stop()
    assert writer.batches_committed == 1
    assert ran == ["by-charge", "same-user", "between", "after"]


def test_five_hundred_charges_for_one_user_end_at_the_exact_balance(
    engine_context: EngineContext, form: str
) -> None:
    context = engine_context
    _top_up(context, GOOD, 3_000)
    settled: list[PendingWrite[int]] = []
    done = threading.Event()
    count = 500

    def deliver(batch: Sequence[PendingWrite[int]]) -> None:
        settled.extend(batch)
        if len(settled) == count:
            done.set()

    group_commit: GroupCommit[int] = GroupCommit(context.router, deliver)

    def command(index: int) -> ChargeCommand:
        return ChargeCommand(f"c-{index}", GOOD, f"o-{index}", "m", "", 7)

    def work(index: int) -> Callable[[], object]:
        return lambda: charge(context, command(index))

    try:
        for index in range(count):
            joinable = _joinable(context, command(index), form)
            group_commit.submit(route_for_user(context, GOOD), work(index), index, joinable)
        assert done.wait(120), f"{len(settled)} of {count} settled"
    finally:
        group_commit.stop()
    outcomes = [_outcome(request) for request in sorted(settled, key=lambda item: item.token)]
    # Arrival order within the user: the first 428 fit (2,996), every later one is refused.
    assert outcomes == ["ok"] * 428 + [Reason.INSUFFICIENT_FUNDS.label] * 72
    assert available(get_wallet(context, GOOD)) == 4
    assert transaction_count(context, GOOD, "CHARGE") == 428
    writer = group_commit.writers[context.router.for_user(GOOD).index]
    assert writer.batches_committed >= 500 // 64 and writer.batches_rerun == 0
    assert audit(context).ok


def test_a_refusal_after_a_kept_savepoint_reruns_the_batch(engine_context: EngineContext) -> None:
    """A refusal raised once a request's unit of work was kept cannot be rolled back alone: the
    writer reruns the batch one by one rather than commit an effect whose caller saw a refusal
    next to neighbours that were rolled back with it."""
    context = engine_context
    _top_up(context, GOOD, 1_000)

    def charged_then_refused() -> object:
        charge(context, ChargeCommand("late", GOOD, "o-late", "m", "", 100))
        raise CofferError(Reason.INSUFFICIENT_FUNDS, "refused after the effect")

    batch = [
        _pending(context, ChargeCommand("first", GOOD, "o-first", "m", "", 200)),
        PendingWrite(route_for_user(context, GOOD), charged_then_refused, "late"),
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (0, 1)
    assert _outcome(batch[0]) == "ok"
    assert isinstance(batch[1].error, CofferError)
    # One by one, as a lone request runs: each charge applied exactly once.
    assert available(get_wallet(context, GOOD)) == 700
    assert transaction_count(context, GOOD, "CHARGE") == 2
    assert audit(context).ok


def test_a_joined_run_answers_each_charge_with_its_own_wallet(engine_context: EngineContext) -> None:
    """One user's cash charges joined in one run: checked and debited in arrival order, each
    answer carrying the wallet right after its own debit, a refusal in the middle leaving the
    later ones their chance."""
    context = engine_context
    _top_up(context, GOOD, 1_000)
    amounts = [300, 500, 400, 200]
    batch = [
        _pending(context, ChargeCommand(f"k{index}", GOOD, f"o{index}", "m", "", amount), "joined")
        for index, amount in enumerate(amounts)
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (1, 0)
    assert [_outcome(request) for request in batch] == ["ok", "ok", Reason.INSUFFICIENT_FUNDS.label, "ok"]
    wallets = [request.result.wallet for request in batch if isinstance(request.result, ChargeResult)]
    assert [available(wallet) for wallet in wallets] == [700, 200, 0]
    assert available(get_wallet(context, GOOD)) == 0
    replay = charge(context, ChargeCommand("k1", GOOD, "o1", "m", "", 500))
    first = batch[1].result
    assert isinstance(first, ChargeResult)
    assert replay.replayed and replay == dataclasses.replace(first, replayed=True)
    with pytest.raises(CofferError) as refused:  # its key was released: checked afresh, refused again
        charge(context, ChargeCommand("k2", GOOD, "o2", "m", "", 400))
    assert refused.value.reason is Reason.INSUFFICIENT_FUNDS
    assert audit(context).ok


def _audit_seqs(context: EngineContext, user_id: int) -> list[int]:
    with context.router.for_user(user_id).engine.connect() as connection:
        rows = connection.execute(
            text("SELECT seq FROM audit_events WHERE user_id = :user ORDER BY seq"), {"user": user_id}
        ).all()
    return [int(row.seq) for row in rows]


def test_a_users_joined_and_single_requests_in_one_batch_extend_one_chain(
    engine_context: EngineContext,
) -> None:
    """A joined run locks its users' audit chain heads with its writes and the batch chains its
    audit rows after them at COMMIT; a single-path request of the same user in the same batch
    (a coupon charge, between two cash runs) must land on the same chain, in arrival order."""
    context = engine_context
    _top_up(context, COUPON_OWNER, 1_000)
    coupon_id = claim_one(context, COUPON_OWNER, template(context, amount_off=100, min_spend=100))
    before = _audit_seqs(context, COUPON_OWNER)
    batch = [
        _pending(context, ChargeCommand("cash-1", COUPON_OWNER, "o-1", "m", "", 100), "joined"),
        _pending(
            context,
            ChargeCommand("coupon", COUPON_OWNER, "o-2", "m", "", 300, coupon_ids=(coupon_id,)),
            "joined",
        ),
        _pending(context, ChargeCommand("cash-2", COUPON_OWNER, "o-3", "m", "", 50), "joined"),
        _pending(context, ChargeCommand("cash-good", GOOD, "o-4", "m", "", 10), "joined"),
    ]
    _top_up(context, GOOD, 100)
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (1, 0)
    assert [_outcome(request) for request in batch] == ["ok"] * 4
    assert available(get_wallet(context, COUPON_OWNER)) == 1_000 - 100 - 200 - 50
    assert _audit_seqs(context, COUPON_OWNER) == list(range(1, len(before) + 4))
    with context.router.for_user(COUPON_OWNER).engine.connect() as connection:
        keys = connection.execute(
            text(
                "SELECT idempotency_key FROM audit_events WHERE user_id = :user AND rpc = 'Charge' "
                "ORDER BY seq"
            ),
            {"user": COUPON_OWNER},
        ).all()
    assert [row.idempotency_key for row in keys] == ["cash-1", "coupon", "cash-2"]
    assert audit(context).ok


def test_a_stale_chain_head_fails_the_batch_and_never_forks_a_chain(
    pg_context: EngineContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a joined run ever to hand the batch a head that is not the chain's last link, the
    audit rows' primary key (user, seq) refuses the rows chained after it: the batch is rolled
    back and its charges rerun one by one, each applied once, and every chain still verifies."""
    context = pg_context
    _top_up(context, GOOD, 1_000)
    _top_up(context, POOR, 1_000)
    original = BatchTransaction.heads_locked

    def stale(self: BatchTransaction, heads: Any) -> None:
        original(self, {user: (seq - 1, "0" * 64) for user, (seq, _hash) in heads.items()})

    monkeypatch.setattr(BatchTransaction, "heads_locked", stale)
    batch = [
        _pending(context, ChargeCommand("g", GOOD, "o-g", "m", "", 100), "joined"),
        _pending(context, ChargeCommand("p", POOR, "o-p", "m", "", 200), "joined"),
    ]
    writer = _run(context, batch)
    assert (writer.batches_committed, writer.batches_rerun) == (0, 1)
    assert [_outcome(request) for request in batch] == ["ok", "ok"]
    assert available(get_wallet(context, GOOD)) == 900
    assert available(get_wallet(context, POOR)) == 800
    assert transaction_count(context, GOOD, "CHARGE") == 1 and transaction_count(context, POOR, "CHARGE") == 1
    assert _audit_seqs(context, GOOD) == [1, 2] and _audit_seqs(context, POOR) == [1, 2]
    assert audit(context).ok


def test_a_joined_run_costs_a_fixed_number_of_round_trips(
    engine_context: EngineContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forty cash charges of forty users, joined: one statement per table for all of them, not
    nine per charge, and on PostgreSQL those statements travel in a few pipelines (what makes
    group commit pay on the hot path)."""
    context = engine_context
    users = [2 * index for index in range(1, 41)]  # even users: shard 0
    for user_id in users:
        _top_up(context, user_id, 1_000)
    batch = [_pending(context, ChargeCommand(f"k{u}", u, f"o{u}", "m", "", 10), "joined") for u in users]
    engine = context.router.for_user(GOOD).engine
    round_trips: list[str] = []

    def count(*args: Any) -> None:
        round_trips.append(str(args[2]))

    def counted(module: Any) -> None:
        send = module.run_pipelined

        def pipelined(connection: Any, queries: Any) -> Any:
            round_trips.append(f"pipeline of {len(queries)}")
            return send(connection, queries)

        monkeypatch.setattr(module, "run_pipelined", pipelined)

    counted(storage_cash_charges)
    counted(storage_outcomes)
    counted(unit_of_work)
    event.listen(engine, "before_cursor_execute", count)
    try:
        writer = _run(context, batch)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (writer.batches_committed, writer.batches_rerun) == (1, 0)
    assert [_outcome(request) for request in batch] == ["ok"] * len(users)
    limit = 8 if engine.dialect.name == "postgresql" else 20
    assert len(round_trips) <= limit, round_trips
    if engine.dialect.name == "postgresql":
        # The reads with the audit chain heads they lock; then the writes (deferred to the
        # batch's last round trip), the answers, the audit rows and COMMIT.
        assert [trip for trip in round_trips if trip.startswith("pipeline")] == [
            "pipeline of 7",
            "pipeline of 9",
        ], round_trips
    assert all(available(get_wallet(context, user_id)) == 990 for user_id in users)
    assert audit(context).ok


def test_two_writers_joining_charges_for_the_same_users_never_overdraw(engine_context: EngineContext) -> None:
    """Two engines' writers on one shard (as two worker processes have), each joining cash
    charges for the same two users at the same time, one key sent to both: the CASH rows are
    locked in one order and the debit's condition holds, so exactly what fits is charged, the
    shared key charges at most once, and the ledger agrees with the balances."""
    context = engine_context
    first, second = GOOD, POOR
    for user_id in (first, second):
        _top_up(context, user_id, 1_000)
    count = 60  # per writer; 30 each: 33 fit in 1,000 per user
    settled: list[PendingWrite[str]] = []
    lock = threading.Lock()
    done = threading.Event()
    expected = 2 * count + 2

    def deliver(batch: Sequence[PendingWrite[str]]) -> None:
        with lock:
            settled.extend(batch)
            if len(settled) == expected:
                done.set()

    writers = [GroupCommit[str](context.router, deliver) for _ in range(2)]

    def submit(writer_index: int) -> None:
        group_commit = writers[writer_index]
        commands = [
            ChargeCommand(f"w{writer_index}-{n}", (first, second)[n % 2], f"o{writer_index}-{n}", "m", "", 30)
            for n in range(count)
        ]
        commands.insert(count // 2, ChargeCommand("shared", first, "o-shared", "m", "", 30))
        for command in commands:
            group_commit.submit(
                route_for_user(context, command.user_id),
                lambda c=command: charge(context, c),
                f"{writer_index}:{command.idempotency_key}",
                _joinable(context, command, "joined"),
            )

    submitters = [threading.Thread(target=submit, args=(index,)) for index in range(2)]
    try:
        for thread in submitters:
            thread.start()
        for thread in submitters:
            thread.join()
        assert done.wait(120), f"{len(settled)} of {expected} settled"
    finally:
        for group_commit in writers:
            group_commit.stop()
    charged: dict[int, set[str]] = {first: set(), second: set()}
    for request in settled:
        if isinstance(request.result, ChargeResult):
            user_id = (
                first
                if "shared" in request.token or int(request.token.rsplit("-", 1)[1]) % 2 == 0
                else second
            )
            charged[user_id].add(request.result.charge_id)
        else:
            assert isinstance(request.error, CofferError), request.error
            assert request.error.reason in (Reason.INSUFFICIENT_FUNDS, Reason.IDEMPOTENCY_KEY_IN_USE), (
                request.error
            )
    shared = {
        request.result.charge_id
        for request in settled
        if "shared" in request.token and isinstance(request.result, ChargeResult)
    }
    assert len(shared) <= 1  # the key sent to both writers charged once at most
    for user_id in (first, second):
        assert len(charged[user_id]) == 33, (user_id, len(charged[user_id]))
        assert available(get_wallet(context, user_id)) == 10
        assert transaction_count(context, user_id, "CHARGE") == 33
    assert audit(context).ok


def test_debits_that_would_not_leave_the_decided_balance_commit_nothing(
    engine_context: EngineContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answers' balances are the ones decided from the locked rows and the debits are sent
    with COMMIT without being read back, so the database checks them: a decision off by one fen
    (a bug) must fail every transaction it is part of — the batch, then each request alone —
    and no answer may claim a balance that was never committed."""
    context = engine_context
    users = [2 * index for index in range(1, 6)]
    for user_id in users:
        _top_up(context, user_id, 1_000)
    decide = service_cash_charges._decide

    def off_by_one(*args: Any) -> Any:
        decision = decide(*args)
        return dataclasses.replace(decision, cash_after={u: v + 1 for u, v in decision.cash_after.items()})

    monkeypatch.setattr(service_cash_charges, "_decide", off_by_one)
    batch = [_pending(context, ChargeCommand(f"k{u}", u, f"o{u}", "m", "", 10), "joined") for u in users]
    writer = _run(context, batch)
    assert writer.batches_rerun == 1
    assert all(request.result is None and request.error is not None for request in batch)
    # Never a refusal the caller could take for an answer: a database error (PostgreSQL's check)
    # or, on SQLite (compared in Python, rerun as a concurrent change), CONTENTION to retry.
    assert all(
        not isinstance(request.error, CofferError) or request.error.reason is Reason.CONTENTION
        for request in batch
    )
    assert all(available(get_wallet(context, user_id)) == 1_000 for user_id in users)
    assert all(transaction_count(context, user_id, "CHARGE") == 0 for user_id in users)
    assert audit(context).ok


def test_refusals_in_savepoints_keep_the_writers_prepared_statements(engine_context: EngineContext) -> None:
    """The writer's connection prepares the one-at-a-time requests' statements (psycopg, after a
    few uses) beside the pipelines' (at once); a refused request's ROLLBACK TO SAVEPOINT seen
    by psycopg would deallocate them all, and the next batch's pipeline would fail on a
    statement that no longer exists (a rerun). psycopg looks only at a statement it has not seen
    before, so the first refusal comes after it has prepared some: none of the ten batches rerun."""
    context = engine_context
    users = [12, 14, 16, 18]  # even: shard 0
    for user_id in users:
        _top_up(context, user_id, 10_000)
    _top_up(context, POOR, 5)
    writer = _writer(context)

    def top_up(user_id: int, key: str) -> PendingWrite[str]:
        # A top-up runs its statements through SQLAlchemy's cursors: those psycopg prepares.
        spec = TopUpSpec(20, Asset.CASH, "alipay", key)
        return PendingWrite(
            route_for_user(context, user_id),
            lambda: issue(context, IssueCommand(key, user_id, spec)),
            key,
        )

    try:
        for n in range(10):
            charges = [
                _pending(context, ChargeCommand(f"j{n}-{u}", u, f"j{n}-{u}", "m", "", 10), "joined")
                for u in users
            ]
            top_ups = [top_up(u, f"t{n}-{u}") for u in users]
            poor = _pending(context, ChargeCommand(f"p{n}", POOR, f"p{n}", "m", "", 10))
            refused = [poor] if n >= 6 else []
            writer.run_batch([*charges, *top_ups, *refused])
            assert [_outcome(request) for request in charges] == ["ok"] * len(users)
            assert [request.error for request in top_ups] == [None] * len(users)
            assert [_outcome(request) for request in refused] == ["INSUFFICIENT_FUNDS"] * len(refused)
    finally:
        writer.stop()
    assert (writer.batches_committed, writer.batches_rerun) == (10, 0)
    assert all(available(get_wallet(context, user_id)) == 10_000 + 10 * (20 - 10) for user_id in users)
    assert available(get_wallet(context, POOR)) == 5
    assert audit(context).ok
