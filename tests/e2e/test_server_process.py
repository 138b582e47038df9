"""The engine as a real process: `make run` on SQLite and PostgreSQL, SIGTERM, kill -9, config checks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coffer.v1 import admin_pb2, admin_pb2_grpc, engine_pb2, engine_pb2_grpc
from tests.support.engines import REPOSITORY, EngineProcess
from tests.support.servers import PostgresServer, free_port


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return int(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        )


def top_up(
    stub: engine_pb2_grpc.TransactionEngineStub, user: int, key: str, amount: int
) -> engine_pb2.IssueResponse:
    return stub.Issue(
        engine_pb2.IssueRequest(
            idempotency_key=key,
            user_id=user,
            top_up=engine_pb2.TopUp(amount=amount, payment_channel="alipay", channel_txn_id=key),
        ),
        timeout=30,
    )


def test_make_run_serves_on_the_sqlite_default() -> None:
    process = EngineProcess({}, command=["make", "--no-print-directory", "run"], cwd=REPOSITORY)
    try:
        assert health(process.target) == health_pb2.HealthCheckResponse.SERVING
        assert (REPOSITORY / "var" / "shard0.db").exists() and (REPOSITORY / "var" / "shard1.db").exists()
    finally:
        process.terminate()


def test_make_run_serves_on_two_postgresql_databases(postgres: PostgresServer) -> None:
    urls = [postgres.create_database(f"makerun{index}") for index in range(2)]
    process = EngineProcess(
        {"COFFER_SHARDS": ",".join(urls)}, command=["make", "--no-print-directory", "run"]
    )
    try:
        assert health(process.target) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(process.target) as channel:
            stub = engine_pb2_grpc.TransactionEngineStub(channel)
            for user in (10, 11):  # one user per shard
                assert top_up(stub, user, f"k{user}", 100).wallet.balances[0].available == 100
            report = admin_pb2_grpc.AdminStub(channel).Audit(admin_pb2.AuditRequest(), timeout=30)
            assert report.ok and len(report.shards) == 2
            assert all(shard.transactions_checked == 1 for shard in report.shards)
    finally:
        process.terminate()


def test_sigterm_stops_serving_and_exits_cleanly(tmp_path: Path) -> None:
    shards = ",".join(f"sqlite:///{tmp_path}/s{index}.db" for index in range(2))
    process = EngineProcess({"COFFER_SHARDS": shards, "COFFER_SHUTDOWN_GRACE_SECONDS": "5"})
    with grpc.insecure_channel(process.target) as channel:
        stub = engine_pb2_grpc.TransactionEngineStub(channel)
        top_up(stub, 3, "before", 100)
        started = time.monotonic()
        assert process.terminate() == 0
        assert time.monotonic() - started < 15
        with pytest.raises(grpc.RpcError) as refused:
            top_up(stub, 3, "after", 100)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_acknowledged_mutations_survive_kill_9(postgres: PostgresServer) -> None:
    urls = [postgres.create_database(f"crash{index}") for index in range(2)]
    environment = {"COFFER_SHARDS": ",".join(urls)}
    process = EngineProcess(environment)
    acknowledged = []
    with grpc.insecure_channel(process.target) as channel:
        stub = engine_pb2_grpc.TransactionEngineStub(channel)
        for index in range(40):
            acknowledged.append(top_up(stub, 100 + index % 4, f"ack-{index}", 10 + index).transaction_id)
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(timeout=30)
    restarted = EngineProcess(environment, port=process.port)
    try:
        with grpc.insecure_channel(restarted.target) as channel:
            stub = engine_pb2_grpc.TransactionEngineStub(channel)
            seen = set()
            for user in range(100, 104):
                page = stub.ListTransactions(engine_pb2.ListTransactionsRequest(user_id=user, page_size=200))
                seen |= {transaction.transaction_id for transaction in page.transactions}
            assert set(acknowledged) <= seen
            # Retrying an acknowledged request after the crash replays it.
            assert top_up(stub, 100, "ack-0", 10).replayed
            assert admin_pb2_grpc.AdminStub(channel).Audit(admin_pb2.AuditRequest(), timeout=30).ok
    finally:
        restarted.terminate()


def test_engine_refuses_a_configuration_its_shards_disagree_with(tmp_path: Path) -> None:
    shards = ",".join(f"sqlite:///{tmp_path}/s{index}.db" for index in range(2))
    first = EngineProcess({"COFFER_SHARDS": shards})
    first.terminate()
    port = free_port()
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "server.py")],
        env={
            "PATH": "/usr/bin:/bin",
            "COFFER_SHARDS": shards,
            "COFFER_VIRTUAL_SHARDS": "64",
            "COFFER_LISTEN": f"127.0.0.1:{port}",
        },
        cwd=REPOSITORY,
        capture_output=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert b"virtual_shards" in completed.stderr


def test_engine_refuses_no_auth_off_loopback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "server.py")],
        env={
            "PATH": "/usr/bin:/bin",
            "COFFER_LISTEN": "0.0.0.0:0",
            "COFFER_SHARDS": f"sqlite:///{tmp_path}/x.db",
        },
        cwd=REPOSITORY,
        capture_output=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert b"loopback" in completed.stderr


def test_metrics_count_calls_and_refusals(tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    metrics_port = free_port()
    shards = ",".join(f"sqlite:///{tmp_path}/s{index}.db" for index in range(2))
    process = EngineProcess(
        {
            "COFFER_SHARDS": shards,
            "COFFER_METRICS_PORT": str(metrics_port),
            "COFFER_JOB_INTERVAL_SECONDS": "1",
        }
    )
    base = f"http://127.0.0.1:{metrics_port}"
    try:
        with grpc.insecure_channel(process.target) as channel:
            stub = engine_pb2_grpc.TransactionEngineStub(channel)
            top_up(stub, 8, "m1", 100)
            with pytest.raises(grpc.RpcError):
                stub.Charge(
                    engine_pb2.ChargeRequest(
                        idempotency_key="c", user_id=8, order_id="o", merchant_id="m", amount=500
                    )
                )
        for path in ("/healthz", "/", "/metricsx"):  # /metrics only
            with pytest.raises(urllib.error.HTTPError) as missing:
                urllib.request.urlopen(base + path, timeout=10)
            assert missing.value.code == 404
        job_ran = 'coffer_job_runs_total{job="expire",outcome="ok"}'
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
                assert answer.status == 200
                body = answer.read().decode()
            if job_ran in body or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert 'coffer_rpc_seconds_count{code="OK",method="Issue"} 1.0' in body
        assert 'coffer_rpc_seconds_count{code="FAILED_PRECONDITION",method="Charge"} 1.0' in body
        assert 'coffer_refusals_total{reason="INSUFFICIENT_FUNDS"} 1.0' in body
        assert 'coffer_requests_total{method="Issue",outcome="ok",reason=""} 1.0' in body
        assert (
            'coffer_requests_total{method="Charge",outcome="refused",reason="INSUFFICIENT_FUNDS"} 1.0' in body
        )
        assert job_ran in body
        assert 'coffer_shard_up{shard="0"} 1.0' in body and 'coffer_shard_up{shard="1"} 1.0' in body
        assert 'coffer_db_pool_checked_out{shard="0"}' in body
        assert 'coffer_db_pool_size{shard="1"} 16.0' in body
    finally:
        process.terminate()


def test_several_worker_processes_share_one_port(tmp_path: Path) -> None:
    shards = ",".join(f"sqlite:///{tmp_path}/s{index}.db" for index in range(2))
    process = EngineProcess({"COFFER_SHARDS": shards, "COFFER_WORKERS": "2"})
    try:
        children = subprocess.run(
            ["pgrep", "-P", str(process.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) >= 2, children
        for index in range(20):
            # A new channel per call: SO_REUSEPORT spreads new connections over the workers.
            with grpc.insecure_channel(process.target) as channel:
                stub = engine_pb2_grpc.TransactionEngineStub(channel)
                top_up(stub, 6, f"w{index}", 5)
        with grpc.insecure_channel(process.target) as channel:
            wallet = engine_pb2_grpc.TransactionEngineStub(channel).GetWallet(
                engine_pb2.GetWalletRequest(user_id=6), timeout=10
            )
            assert wallet.balances[0].available == 100
            assert admin_pb2_grpc.AdminStub(channel).Audit(admin_pb2.AuditRequest(), timeout=30).ok
    finally:
        assert process.terminate() == 0


def test_sigterm_lets_an_in_flight_call_finish(postgres: PostgresServer) -> None:
    """A charge blocked on a row lock when SIGTERM arrives still completes within the grace."""
    import threading

    import psycopg

    urls = [postgres.create_database(f"inflight{index}") for index in range(2)]
    process = EngineProcess({"COFFER_SHARDS": ",".join(urls), "COFFER_SHUTDOWN_GRACE_SECONDS": "20"})
    user = 2  # virtual shard 2 -> physical shard 0
    outcome: dict[str, object] = {}
    with grpc.insecure_channel(process.target) as channel:
        stub = engine_pb2_grpc.TransactionEngineStub(channel)
        top_up(stub, user, "seed", 1000)
        with psycopg.connect(postgres.dsn("inflight0")) as blocker:
            blocker.execute("SELECT * FROM balances WHERE user_id = %s FOR UPDATE", (user,))

            def pay() -> None:
                try:
                    outcome["response"] = stub.Charge(
                        engine_pb2.ChargeRequest(
                            idempotency_key="in-flight",
                            user_id=user,
                            order_id="o",
                            merchant_id="m",
                            amount=300,
                        ),
                        timeout=30,
                    )
                except grpc.RpcError as error:
                    outcome["error"] = error.code()

            caller = threading.Thread(target=pay)
            caller.start()
            time.sleep(1.0)  # the charge is now waiting on the locked balance row
            process.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            with pytest.raises(grpc.RpcError) as refused:
                top_up(stub, 3, "after-sigterm", 1)  # another shard: new calls are refused meanwhile
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            blocker.rollback()  # release the lock: the in-flight charge proceeds
        caller.join(timeout=30)
    assert process.process.wait(timeout=30) == 0
    assert "error" not in outcome, outcome
    response = outcome["response"]
    assert response.wallet.balances[0].available == 700  # type: ignore[attr-defined]
