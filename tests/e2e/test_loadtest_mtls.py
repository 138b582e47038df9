"""The load-test harness against an engine under ``COFFER_AUTH=mtls`` (docs/security.md): with a
directory of per-role certificates every RPC goes out with the role it needs (ops seeds and
audits, the payment callback tops up, the order service charges, the till redeems for its own
merchant), and the run ends with the audit ok. A short run; nothing timed is asserted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from clients.loadtest.cli import main
from clients.loadtest.config import DEFAULT_MIX, LoadConfig, parse_mix
from clients.loadtest.credentials import Credentials, till_merchant_of
from clients.loadtest.runner import run
from tests.support.secure_clients import POS_MERCHANT_ID, AuthMode, SecureEngine, make_certs


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEngine]:
    certs = make_certs(tmp_path_factory.mktemp("lt-certs"))
    secure = SecureEngine(AuthMode.MTLS, certs, tmp_path_factory.mktemp("lt-mtls-engine"))
    try:
        yield secure
    finally:
        secure.stop()


def test_the_till_merchant_is_read_from_the_pos_certificate(engine: SecureEngine) -> None:
    assert till_merchant_of(engine.certs.directory) == POS_MERCHANT_ID


def test_a_short_mixed_run_over_mtls_audits_ok(engine: SecureEngine, tmp_path: Path) -> None:
    directory = engine.certs.directory
    config = LoadConfig(
        target=f"localhost:{engine.port}",
        users=8,
        concurrency=2,
        connections=1,
        duration_s=2.0,
        mix=parse_mix(DEFAULT_MIX),
        merchants=3,
        progress=False,
        credentials=Credentials(directory=directory),
        till_merchant=till_merchant_of(directory),
    )
    result = run(config, report_path=tmp_path / "report.json", console=Console(quiet=True))
    report = result.report
    assert result.ok, report["failures"]
    assert report["audit"]["ok"]
    assert not report["disabled_kinds"]
    for rpc in ("Charge", "Issue", "Redeem", "Capture"):
        assert report["rpcs"][rpc]["ok"] > 0, rpc


def test_the_command_line_takes_the_credentials_dir(engine: SecureEngine, tmp_path: Path) -> None:
    arguments = ["--target", f"localhost:{engine.port}", "--credentials-dir", str(engine.certs.directory)]
    common = ["--users", "4", "--concurrency", "2", "--duration", "1", "--no-progress"]
    common += ["--mix", "cash-charge"]
    assert main([*arguments, *common, "--report", str(tmp_path / "r.json")]) == 0


def test_without_a_client_certificate_the_harness_reports_the_engine_unreachable(
    engine: SecureEngine,
) -> None:
    ca = engine.certs.directory / "ca.pem"
    common = ["--users", "2", "--concurrency", "1", "--duration", "1", "--no-progress", "--attempts", "1"]
    assert main(["--target", f"localhost:{engine.port}", "--ca", str(ca), "--timeout", "3", *common]) == 1
