"""Must show 2: the client's retries against a real engine end in exactly one effect when
(a) the engine process is killed mid-call and restarted on the same port and shards, and
(b) every attempt's deadline is shorter than the call."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from clients.order_client import OrderClient, RetryPolicy, balance_of
from coffer.v1 import common_pb2, engine_pb2
from tests.support.engines import REPOSITORY, wait_serving
from tests.support.servers import PostgresServer, free_port

LOCK_WAIT_SECONDS = 15


class RestartableEngine:
    """``python server.py`` on a fixed port, so a restarted engine answers at the same address."""

    def __init__(self, shard_urls: list[str], log: Path) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.shard_urls = shard_urls
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "COFFER_SHARDS": ",".join(self.shard_urls),
            "COFFER_LISTEN": self.target,
            "COFFER_METRICS_PORT": "0",
            "COFFER_JOB_INTERVAL_SECONDS": "0",
        }
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(REPOSITORY / "server.py")],
                cwd=REPOSITORY,
                env=env,
                stdout=log,
                stderr=log,
            )
        wait_serving(self.target)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def pg_shards(postgres: PostgresServer) -> tuple[PostgresServer, list[str], list[str]]:
    names = [f"retry_{uuid.uuid4().hex[:8]}_shard{index}" for index in range(2)]
    return postgres, names, [postgres.create_database(name) for name in names]


@contextmanager
def cash_row_locked(
    postgres: PostgresServer, databases: list[str], user_id: int
) -> Iterator[psycopg.Connection]:
    """Hold the user's CASH balance row with ``FOR UPDATE``: the engine's charge waits on it."""
    for database in databases:
        connection = psycopg.connect(postgres.dsn(database))
        row = connection.execute(
            "SELECT available FROM balances WHERE user_id = %s AND asset = 'CASH' FOR UPDATE", (user_id,)
        ).fetchone()
        if row is not None:
            try:
                yield connection
            finally:
                connection.rollback()
                connection.close()
            return
        connection.rollback()
        connection.close()
    raise AssertionError(f"user {user_id} has no CASH row on any shard")


def wait_for_lock_waiter(postgres: PostgresServer, databases: list[str]) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as monitor:
        while time.monotonic() < deadline:
            waiting = monitor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = ANY(%s)",
                (databases,),
            ).fetchone()
            if waiting and waiting[0] > 0:
                return
            time.sleep(0.02)
    raise AssertionError("the engine's charge never waited on the locked row")


def charges_of(client: OrderClient, user_id: int) -> list[common_pb2.Transaction]:
    return [tx for tx in client.iter_transactions(user_id) if tx.type == common_pb2.TRANSACTION_TYPE_CHARGE]


def run_in_thread(work: object) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["response"] = work()  # type: ignore[operator]
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_engine_killed_mid_call_and_restarted(
    pg_shards: tuple[PostgresServer, list[str], list[str]], tmp_path: Path
) -> None:
    postgres, databases, urls = pg_shards
    engine = RestartableEngine(urls, tmp_path / "engine.log")
    engine.start()
    retries: list[str] = []
    # Waits of up to 2 s, so the 20 attempts outlast a restart on a loaded 2-core machine (with
    # waits of at most 0.5 s they could all be spent in ~3 s); the 90 s total bounds the call.
    policy = RetryPolicy(max_attempts=20, initial_backoff_s=0.1, max_backoff_s=2.0, total_timeout_s=90)
    try:
        with OrderClient(
            engine.target, timeout=10, retry=policy, on_retry=lambda rpc, e, n: retries.append(e.reason)
        ) as client:
            user = 9001
            client.issue_top_up(user, 100_000, payment_channel="alipay", channel_txn_id="retry-kill-1")
            key = f"order-K1-{uuid.uuid4().hex}"
            with cash_row_locked(postgres, databases, user):
                thread, outcome = run_in_thread(
                    lambda: client.charge(user, "K-1", "m-1", 2_500, points=0, idempotency_key=key)
                )
                wait_for_lock_waiter(postgres, databases)
                engine.kill()  # the call is in flight, blocked inside its transaction
            # Down for a while: the client keeps retrying (UNAVAILABLE) with the same key.
            time.sleep(1.0)
            assert thread.is_alive(), outcome
            engine.start()
            thread.join(timeout=120)
            assert not thread.is_alive()
            assert "error" not in outcome, outcome
            response = outcome["response"]
            assert isinstance(response, engine_pb2.ChargeResponse)
            assert "UNAVAILABLE" in retries

            charges = charges_of(client, user)
            assert len(charges) == 1 and charges[0].charge_id == response.charge_id
            assert charges[0].idempotency_key == key
            assert balance_of(client.get_wallet(user), common_pb2.ASSET_CASH)[0] == 100_000 - 2_500
            # Once more with the same key: the stored answer, no second effect.
            again = client.charge(user, "K-1", "m-1", 2_500, idempotency_key=key)
            assert again.replayed and again.charge_id == response.charge_id
            assert len(charges_of(client, user)) == 1
            assert client.audit().ok
    finally:
        engine.stop()


def test_engine_down_before_the_call_then_back(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path}/shard{index}.db" for index in range(2)]
    engine = RestartableEngine(urls, tmp_path / "engine.log")
    engine.start()
    retries: list[str] = []
    # Waits of up to 2 s, so the 20 attempts outlast a restart on a loaded 2-core machine (with
    # waits of at most 0.5 s they could all be spent in ~3 s); the 90 s total bounds the call.
    policy = RetryPolicy(max_attempts=20, initial_backoff_s=0.1, max_backoff_s=2.0, total_timeout_s=90)
    try:
        with OrderClient(
            engine.target, timeout=5, retry=policy, on_retry=lambda rpc, e, n: retries.append(e.reason)
        ) as client:
            client.issue_top_up(31, 10_000, payment_channel="alipay", channel_txn_id="retry-down-1")
            engine.kill()
            thread, outcome = run_in_thread(
                lambda: client.charge(31, "D-1", "m-1", 700, idempotency_key="d-1")
            )
            time.sleep(1.0)
            engine.start()
            thread.join(timeout=120)
            assert "error" not in outcome, outcome
            assert retries and set(retries) == {"UNAVAILABLE"}
            assert len(charges_of(client, 31)) == 1
            assert balance_of(client.get_wallet(31), common_pb2.ASSET_CASH)[0] == 9_300
            assert client.audit().ok
    finally:
        engine.stop()


def test_deadline_shorter_than_the_call(
    pg_shards: tuple[PostgresServer, list[str], list[str]], tmp_path: Path
) -> None:
    """Each attempt's deadline (0.4 s) passes while the engine waits on a locked row; the first
    attempt commits once the row is free, and a later attempt gets its stored answer."""
    postgres, databases, urls = pg_shards
    engine = RestartableEngine(urls, tmp_path / "engine.log")
    engine.start()
    retries: list[str] = []
    policy = RetryPolicy(max_attempts=15, initial_backoff_s=0.05, max_backoff_s=0.3, total_timeout_s=60)
    try:
        with OrderClient(
            engine.target, timeout=0.4, retry=policy, on_retry=lambda rpc, e, n: retries.append(e.reason)
        ) as client:
            user = 9002
            client.issue_top_up(user, 50_000, payment_channel="alipay", channel_txn_id="retry-deadline-1")
            key = f"order-L1-{uuid.uuid4().hex}"
            with cash_row_locked(postgres, databases, user):
                thread, outcome = run_in_thread(
                    lambda: client.charge(user, "L-1", "m-1", 4_000, idempotency_key=key)
                )
                wait_for_lock_waiter(postgres, databases)
                time.sleep(1.5)  # several attempts time out meanwhile
            thread.join(timeout=60)
            assert "error" not in outcome, outcome
            response = outcome["response"]
            assert isinstance(response, engine_pb2.ChargeResponse)
            assert retries.count("DEADLINE_EXCEEDED") >= 2, retries
            # The answer came from a retry that found the first attempt's effect.
            assert response.replayed
            charges = charges_of(client, user)
            assert len(charges) == 1 and charges[0].charge_id == response.charge_id
            assert balance_of(client.get_wallet(user), common_pb2.ASSET_CASH)[0] == 50_000 - 4_000
            assert client.audit().ok
    finally:
        engine.stop()
