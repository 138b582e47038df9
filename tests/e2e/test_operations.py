"""The engine as operators meet it, as real processes: one engine per port, start-up failures in
one line, ``--help``, the jobs CLI, per-request JSON logs (``/metrics``: test_server_process)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coffer.v1 import common_pb2, engine_pb2, engine_pb2_grpc
from tests.support.engines import REPOSITORY, EngineProcess
from tests.support.servers import PostgresServer, free_port

SERVER = str(REPOSITORY / "server.py")
#: A log record starts with an ISO-8601 time; anything else on stderr is the failure line.
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
PHONE_HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def environment(**variables: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COFFER_METRICS_PORT": "0", **variables}


def sqlite_shards(directory: Path) -> str:
    return ",".join(f"sqlite:///{directory}/s{index}.db" for index in range(2))


def failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]


def assert_one_line_failure(completed: subprocess.CompletedProcess[str], expected: str) -> None:
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr and "Event loop is closed" not in completed.stderr
    lines = failure_lines(completed.stderr)
    assert len(lines) == 1, completed.stderr
    assert completed.stderr.strip().splitlines()[-1] == lines[0]
    assert expected in lines[0], lines[0]


def serve(env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SERVER], env=env, cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout_s
    )


def jobs(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.jobs", *arguments],
        env=env,
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return int(
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
        )


def top_up(stub: engine_pb2_grpc.TransactionEngineStub, user: int, key: str, amount: int) -> None:
    stub.Issue(
        engine_pb2.IssueRequest(
            idempotency_key=key,
            user_id=user,
            top_up=engine_pb2.TopUp(amount=amount, payment_channel="alipay", channel_txn_id=key),
        ),
        timeout=30,
    )


def assert_still_serving(target: str, user: int, available: int) -> None:
    assert health(target) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(target) as channel:
        wallet = engine_pb2_grpc.TransactionEngineStub(channel).GetWallet(
            engine_pb2.GetWalletRequest(user_id=user), timeout=10
        )
    assert wallet.balances[0].available == available


def test_a_second_engine_on_a_taken_port_refuses_and_the_first_keeps_serving(tmp_path: Path) -> None:
    first = EngineProcess({"COFFER_SHARDS": sqlite_shards(tmp_path / "first")})
    try:
        with grpc.insecure_channel(first.target) as channel:
            top_up(engine_pb2_grpc.TransactionEngineStub(channel), 4, "before", 100)
        for workers in ("1", "2"):
            second = serve(
                environment(
                    COFFER_LISTEN=first.target,
                    COFFER_SHARDS=sqlite_shards(tmp_path / "second"),
                    COFFER_METRICS_PORT=str(free_port()),
                    COFFER_WORKERS=workers,
                )
            )
            assert_one_line_failure(second, str(first.port))
            assert_still_serving(first.target, 4, 100)
    finally:
        assert first.terminate() == 0


def wait_for_serving_workers(log: Path, count: int, timeout_s: float = 60) -> None:
    """Until ``count`` processes have logged that they serve (JSON log lines carry the pid)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        serving = {record["pid"] for record in records if "serving on" in str(record.get("message", ""))}
        if len(serving) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} workers logged that they serve within {timeout_s} s")


def test_workers_share_their_port_but_no_other_engine_joins(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    process = EngineProcess(
        {"COFFER_SHARDS": sqlite_shards(tmp_path), "COFFER_WORKERS": "2", "COFFER_LOG_FORMAT": "json"},
        log_path=log,
    )
    try:
        # The parent answers once its first worker serves; the second may still be starting on a
        # loaded machine, and connections made before it listens all land on the first.
        wait_for_serving_workers(log, 2)
        for index in range(20):
            # A new channel per call: SO_REUSEPORT spreads new connections over the workers.
            with grpc.insecure_channel(process.target) as channel:
                top_up(engine_pb2_grpc.TransactionEngineStub(channel), 6, f"w{index}", 5)
        for workers in ("1", "2"):
            intruder = serve(
                environment(
                    COFFER_LISTEN=process.target,
                    COFFER_SHARDS=sqlite_shards(tmp_path / "intruder"),
                    COFFER_WORKERS=workers,
                )
            )
            assert_one_line_failure(intruder, str(process.port))
        assert_still_serving(process.target, 6, 100)
    finally:
        assert process.terminate() == 0
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    serving_pids = {record["pid"] for record in records if record.get("method") == "Issue"}
    assert len(serving_pids) == 2, serving_pids


def test_help_lists_the_configuration_and_does_not_start(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, SERVER, "--help"],
        env=environment(COFFER_LISTEN=f"127.0.0.1:{port}", COFFER_SHARDS=sqlite_shards(tmp_path)),
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0
    assert time.monotonic() - started < 30
    for variable in ("COFFER_LISTEN", "COFFER_SHARDS", "COFFER_STARTUP_TIMEOUT_SECONDS", "COFFER_LOG_FORMAT"):
        assert variable in completed.stdout
    assert "[default: 60.0]" in completed.stdout
    assert not list(tmp_path.iterdir())  # no shard was opened
    bad = subprocess.run(
        [sys.executable, SERVER, "--no-such-flag"], cwd=REPOSITORY, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_refused_configurations_end_in_one_line(tmp_path: Path) -> None:
    off_loopback = serve(environment(COFFER_LISTEN="0.0.0.0:0", COFFER_SHARDS=sqlite_shards(tmp_path)))
    assert_one_line_failure(off_loopback, "loopback")
    assert len(off_loopback.stderr.strip().splitlines()) == 1
    malformed = serve(environment(COFFER_WORKERS="many"))
    assert_one_line_failure(malformed, "COFFER_WORKERS")
    assert len(malformed.stderr.strip().splitlines()) == 1

    shards = sqlite_shards(tmp_path)
    EngineProcess({"COFFER_SHARDS": shards}).terminate()
    mismatch = serve(
        environment(
            COFFER_LISTEN=f"127.0.0.1:{free_port()}", COFFER_SHARDS=shards, COFFER_VIRTUAL_SHARDS="64"
        )
    )
    assert_one_line_failure(mismatch, "virtual_shards")


def test_a_missing_database_ends_after_the_startup_timeout(postgres: PostgresServer) -> None:
    started = time.monotonic()
    completed = serve(
        environment(
            COFFER_LISTEN=f"127.0.0.1:{free_port()}",
            COFFER_SHARDS=postgres.url("no_such_database"),
            COFFER_STARTUP_TIMEOUT_SECONDS="2",
        )
    )
    assert time.monotonic() - started < 30
    assert_one_line_failure(completed, "no_such_database")
    assert "COFFER_STARTUP_TIMEOUT_SECONDS" in failure_lines(completed.stderr)[0]
    assert "waiting for shard 0" in completed.stderr  # it said what it waited for


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_while_waiting_for_shards_ends_in_one_line(workers: str) -> None:
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/coffer"
    process = subprocess.Popen(
        [sys.executable, SERVER],
        env=environment(
            COFFER_LISTEN=f"127.0.0.1:{free_port()}", COFFER_SHARDS=unreachable, COFFER_WORKERS=workers
        ),
        cwd=REPOSITORY,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while "waiting for shard 0" not in seen and time.monotonic() < deadline:
        seen += process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    rest = process.communicate(timeout=30)[1]
    completed = subprocess.CompletedProcess(process.args, process.returncode, "", seen + rest)
    assert_one_line_failure(completed, "stopped")


def test_jobs_cli_refuses_bad_arguments_in_one_line(tmp_path: Path) -> None:
    env = environment(COFFER_SHARDS=sqlite_shards(tmp_path))
    for arguments, expected in (
        (("audit", "--shard", "99"), "--shard 99"),
        (("expire", "--now", "not-a-time"), "--now"),
        (("expire", "--now", "nan"), "--now"),
        (("expire", "--now", "2999-01-01T00:00:00Z"), "--force"),
        (("expire", "--shard", "0"), "audit only"),
        (("no-such-job",), "invalid choice"),
    ):
        completed = jobs(env, *arguments)
        assert completed.returncode == 2, (arguments, completed.stderr)
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
        assert expected in completed.stderr
    forced = jobs(env, "expire", "--now", "2999-01-01T00:00:00Z", "--force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["now_us"] == 32_472_144_000_000_000
    assert "2999-01-01T00:00:00" in forced.stderr  # the run's log line shows the time, not a µs count
    assert jobs(env, "expire", "--now", str(int(time.time()) + 3600)).returncode == 0
    assert jobs(env, "audit", "--shard", "1").returncode == 0


def test_json_log_has_one_line_per_request(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    process = EngineProcess(
        {"COFFER_SHARDS": sqlite_shards(tmp_path), "COFFER_LOG_FORMAT": "json"}, log_path=log
    )
    try:
        with grpc.insecure_channel(process.target) as channel:
            stub = engine_pb2_grpc.TransactionEngineStub(channel)
            top_up(stub, 9, "j1", 100)
            with pytest.raises(grpc.RpcError):
                stub.Charge(
                    engine_pb2.ChargeRequest(
                        idempotency_key="j2",
                        user_id=9,
                        order_id="o-9",
                        merchant_id="m",
                        amount=500,
                        context=common_pb2.RequestContext(ip="203.0.113.7", phone_hash=PHONE_HASH),
                    ),
                    timeout=30,
                )
            stub.GetWallet(engine_pb2.GetWalletRequest(user_id=9), timeout=10)
    finally:
        process.terminate()
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    requests = [record for record in records if "method" in record and record["logger"] == "coffer.request"]
    assert [record["method"] for record in requests] == ["Issue", "Charge", "GetWallet"]
    issue, charge, wallet = requests
    for record in requests:
        assert isinstance(record["duration_ms"], float | int) and record["duration_ms"] >= 0
        assert datetime.fromisoformat(record["ts"]).tzinfo is not None
    assert issue["outcome"] == "ok" and issue["idempotency_key"] == "j1" and issue["user_id"] == 9
    assert charge["outcome"] == "refused" and charge["reason"] == "INSUFFICIENT_FUNDS"
    assert charge["order_id"] == "o-9" and charge["caller_network"] == "203.0.113.0/24"
    assert wallet["outcome"] == "ok" and "idempotency_key" not in wallet
    assert "203.0.113.7" not in text and PHONE_HASH not in text
