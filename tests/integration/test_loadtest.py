"""Must show 3 (short form): the harness against a real engine process ends with the audit ok, on
SQLite and on PostgreSQL; a stray ledger row planted in a shard makes the harness fail.
``make loadtest`` runs the long form (60 s, 32-way)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.loadtest.cli import main as harness_main
from clients.loadtest.config import MixError, parse_mix
from tests.support.engines import REPOSITORY, EngineProcess

SHORT_RUN = ("--duration", "8", "--concurrency", "8", "--users", "24")


def run_harness(target: str, tmp_path: Path, *options: str) -> tuple[int, dict[str, Any], str]:
    report, chart = tmp_path / "report.json", tmp_path / "latency.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clients.loadtest",
            "--target",
            target,
            "--no-progress",
            "--report",
            str(report),
            "--chart",
            str(chart),
            *options,
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, json.loads(report.read_text()), result.stdout + result.stderr


@pytest.fixture
def engine_process(shard_urls: list[str], tmp_path: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(
        {"COFFER_SHARDS": ",".join(shard_urls), "COFFER_JOB_INTERVAL_SECONDS": "0"},
        log_path=tmp_path / "engine.log",
    )
    try:
        yield engine
    finally:
        engine.terminate()


def test_short_harness_run_ends_with_audit_ok(engine_process: EngineProcess, tmp_path: Path) -> None:
    code, report, output = run_harness(engine_process.target, tmp_path, *SHORT_RUN)
    assert code == 0, output
    assert report["ok"] and report["failures"] == []
    assert report["audit"]["ok"] and all(shard["ok"] for shard in report["audit"]["shards"])
    assert sum(shard["transactions_checked"] for shard in report["audit"]["shards"]) > 100
    charge = report["rpcs"]["Charge"]
    assert (
        charge["ok"] > 20 and 0 < charge["p50_ms"] <= charge["p95_ms"] <= charge["p99_ms"] <= charge["max_ms"]
    )
    assert report["rpcs"]["Refund"]["ok"] > 0
    assert report["checks"]["violation_count"] == 0
    assert sum(report["checks"]["duplicates"].values()) > 0
    assert all(entry["expected"] for entry in report["errors"].values())
    assert "audit: ok" in output
    chart = (tmp_path / "latency.html").read_text()
    assert chart.count("<svg") == 3 and "Charge" in chart


@pytest.mark.parametrize("shard_urls", ["sqlite"], indirect=True)
def test_planted_stray_ledger_row_fails_the_harness(
    engine_process: EngineProcess, shard_urls: list[str], tmp_path: Path
) -> None:
    shard_file = shard_urls[0].removeprefix("sqlite:///")
    now_us = time.time_ns() // 1000
    with sqlite3.connect(shard_file) as db:
        db.execute(
            "INSERT INTO ledger_transactions (transaction_id, user_id, type, idempotency_key, charge_id, "
            "memo, created_at_us) VALUES ('tx_planted_fault', 128, 'ADJUST', '', '', 'planted by a test', ?)",
            (now_us,),
        )
        db.execute(
            "INSERT INTO ledger_entries (transaction_id, account, user_id, asset, bucket, instrument, "
            "amount) VALUES ('tx_planted_fault', 'user', 128, 'CASH', 'available', '', 12345)"
        )
    code, report, output = run_harness(
        engine_process.target, tmp_path, "--duration", "2", "--concurrency", "2", "--users", "4"
    )
    assert code == 1, output
    assert report["ok"] is False and report["audit"]["ok"] is False
    broken = {v["invariant"] for shard in report["audit"]["shards"] for v in shard["violations"]}
    assert "1.transaction_sums_to_zero" in broken
    assert any("tx_planted_fault" in v["detail"] for s in report["audit"]["shards"] for v in s["violations"])
    assert any(failure.startswith("audit found broken invariants") for failure in report["failures"])
    assert "FAILED" in output


def test_mix_parsing_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_mix("charge=50,refund=10,topup=0") == {"charge": 50, "refund": 10}
    assert parse_mix("charge-only") == {"charge": 100}
    for bad in ("charge", "charge=-1", "bogus=3", "charge=0", "charge=1,charge=2", "charge=x"):
        with pytest.raises(MixError):
            parse_mix(bad)
    assert harness_main(["--target", "127.0.0.1:1", "--mix", "bogus=1"]) == 2
    assert harness_main(["--target", "127.0.0.1:1", "--concurrency", "0"]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("shard_urls", ["sqlite"], indirect=True)
def test_two_load_processes_in_an_open_loop_merge_into_one_report(
    engine_process: EngineProcess, tmp_path: Path
) -> None:
    code, report, output = run_harness(
        engine_process.target,
        tmp_path,
        *("--duration", "4", "--concurrency", "6", "--users", "8"),
        *("--processes", "2", "--rate", "40", "--mix", "cash_charge=70,echo=20,refund=10"),
    )
    assert code == 0, output
    assert report["ok"] and report["audit"]["ok"]
    assert report["config"]["processes"] == 2 and report["config"]["loop"] == "open"
    rpcs = report["rpcs"]
    assert rpcs["Charge"]["ok"] > 0 and rpcs["Check"]["ok"] > 0
    assert rpcs["Charge"]["measured_calls"] + rpcs["Check"]["measured_calls"] <= report["totals"]["calls"]
    assert report["totals"]["client_cpu_us_per_call"] > 0
    assert report["operations"]["cash_charge"]["count"] > 0
    chart = (tmp_path / "latency.html").read_text()
    assert chart.count("<svg") == 3 and "Check" in chart and "2 process(es)" in chart
