"""Group commit under failure, against a real engine process on real PostgreSQL:

* SIGKILL of the engine ten times under a 16-client charge load, each time restarted on the
  same port: every acknowledged answer replays with the same ids, balances are exact, audit ok;
* ``pg_terminate_backend`` on the engine's connections every few hundred ms under load: only
  retryable codes (UNAVAILABLE / ABORTED), nothing doubled, audit ok.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg

from coffer.v1 import admin_pb2, admin_pb2_grpc, common_pb2, engine_pb2, engine_pb2_grpc
from tests.support.engines import EngineProcess
from tests.support.servers import PostgresServer, free_port

CLIENTS = 16
USERS = 32
TOP_UP_FEN = 1_000_000
CHARGE_FEN = 100
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
#: While settling, a call that waited out an engine restart may also run out of its deadline.
SETTLE_RETRYABLE = RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}
CALL_TIMEOUT_SECONDS = 10
SETTLE_ATTEMPTS = 40


def _user(index: int) -> int:
    return 5_000 + index


def _charge_request(key: str, user_id: int) -> engine_pb2.ChargeRequest:
    return engine_pb2.ChargeRequest(
        idempotency_key=key, user_id=user_id, order_id=f"o-{key}", merchant_id="m-chaos", amount=CHARGE_FEN
    )


@dataclass
class Load:
    """16 callers charging random users with fresh keys; what each call ended in."""

    target: str
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (charge, txn)
    unsettled: set[str] = field(default_factory=set)  # keys still failing at the stop: applied or not
    codes: set[grpc.StatusCode] = field(default_factory=set)
    users_of: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, caller: int) -> None:
        """Like a real client: a failed call is retried with the same key until it answers."""
        number = 0
        with grpc.insecure_channel(self.target) as channel:
            stub = engine_pb2_grpc.TransactionEngineStub(channel)
            while not self.stop.is_set():
                number += 1
                key = f"chaos-{caller}-{number}-{uuid.uuid4().hex[:6]}"
                user_id = _user((caller * 7 + number) % USERS)
                with self.lock:
                    self.users_of[key] = user_id
                while True:
                    try:
                        answer = stub.Charge(_charge_request(key, user_id), timeout=CALL_TIMEOUT_SECONDS)
                    except grpc.RpcError as error:
                        with self.lock:
                            self.codes.add(error.code())
                        if self.stop.wait(0.05):
                            with self.lock:
                                self.unsettled.add(key)
                            return
                        continue
                    with self.lock:
                        self.acknowledged[key] = (answer.charge_id, answer.transaction_id)
                    break

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(index,), daemon=True) for index in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads


def _engine(urls: list[str], port: int, log: Path) -> EngineProcess:
    return EngineProcess(
        {"COFFER_SHARDS": ",".join(urls), "COFFER_JOB_INTERVAL_SECONDS": "0"}, port=port, log_path=log
    )


def _top_up_everyone(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = engine_pb2_grpc.TransactionEngineStub(channel)
        for index in range(USERS):
            stub.Issue(
                engine_pb2.IssueRequest(
                    idempotency_key=f"top-{index}",
                    user_id=_user(index),
                    top_up=engine_pb2.TopUp(
                        amount=TOP_UP_FEN,
                        asset=common_pb2.ASSET_CASH,
                        payment_channel="alipay",
                        channel_txn_id=f"chaos-top-{index}",
                    ),
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )


def _settle_and_check(target: str, load: Load) -> None:
    """Replay every key (acknowledged and unsettled) until it answers: acknowledged answers come
    back unchanged; then each user's balance is its top-up less exactly one charge per key."""
    with grpc.insecure_channel(target) as channel:
        stub = engine_pb2_grpc.TransactionEngineStub(channel)

        def settled(key: str) -> engine_pb2.ChargeResponse:
            for _attempt in range(SETTLE_ATTEMPTS):
                try:
                    return stub.Charge(_charge_request(key, load.users_of[key]), timeout=CALL_TIMEOUT_SECONDS)
                except grpc.RpcError as error:
                    assert error.code() in SETTLE_RETRYABLE, (key, error.code(), error.details())
                    time.sleep(0.2)
            raise AssertionError(f"{key} never settled")

        def replayed(key: str) -> None:
            again = settled(key)
            assert again.replayed and (again.charge_id, again.transaction_id) == load.acknowledged[key], key

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(replayed, list(load.acknowledged)))
            list(pool.map(settled, list(load.unsettled)))
        charges_per_user: dict[int, int] = {}
        for user_id in load.users_of.values():
            charges_per_user[user_id] = charges_per_user.get(user_id, 0) + 1
        for user_id, count in charges_per_user.items():
            wallet = stub.GetWallet(
                engine_pb2.GetWalletRequest(user_id=user_id), timeout=CALL_TIMEOUT_SECONDS
            )
            cash = next(b for b in wallet.balances if b.asset == common_pb2.ASSET_CASH)
            assert cash.available == TOP_UP_FEN - CHARGE_FEN * count, user_id
        report = admin_pb2_grpc.AdminStub(channel).Audit(admin_pb2.AuditRequest(), timeout=120)
        assert report.ok, report


def test_sigkill_ten_times_under_load_every_acknowledged_answer_replays(
    pg_shard_urls: list[str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "engine.log"
    engine = _engine(pg_shard_urls, port, log)
    try:
        _top_up_everyone(engine.target)
        load = Load(engine.target)
        threads = load.start()
        for _round in range(10):
            time.sleep(0.6)
            engine.kill()
            engine = _engine(pg_shard_urls, port, log)
        time.sleep(0.6)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert len(load.acknowledged) > 50, len(load.acknowledged)
        _settle_and_check(engine.target, load)
    finally:
        if engine.process.poll() is None:
            engine.terminate()


def _terminate_backends(
    postgres: PostgresServer, databases: list[str], stop: threading.Event
) -> Callable[[], int]:
    killed = [0]

    def run() -> None:
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as monitor:
            while not stop.wait(0.3):
                rows = monitor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                    (databases,),
                ).fetchall()
                killed[0] += len(rows)

    threading.Thread(target=run, daemon=True).start()
    return lambda: killed[0]


def test_terminated_connections_under_load_give_only_retryable_codes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    databases = [f"chaos_{uuid.uuid4().hex[:8]}_shard{index}" for index in range(2)]
    urls = [postgres.create_database(name) for name in databases]
    engine = _engine(urls, free_port(), tmp_path / "engine.log")
    try:
        _top_up_everyone(engine.target)
        load = Load(engine.target)
        threads = load.start()
        stop_killing = threading.Event()
        killed = _terminate_backends(postgres, databases, stop_killing)
        time.sleep(6)
        stop_killing.set()
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert killed() > 0
        assert load.codes <= RETRYABLE, load.codes
        assert load.acknowledged, "no charge got through at all"
        _settle_and_check(engine.target, load)
    finally:
        engine.terminate()
