"""The admin CLI (``coffer``): every command against a served engine, yuan in and out, keys that
replay, refusals on one line in yuan, and the exit codes (1 refused, 2 bad arguments, 3 no engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clients._cli import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE
from clients.admin.cli import main
from clients.order_client import OrderClient, balance_of
from coffer.v1 import common_pb2
from tests.support.engines import ThreadEngine
from tests.support.servers import free_port


def _run(target: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["--target", target, "--json", *args])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    return code, (lines[0] if lines else {}), captured.err


def test_money_commands_in_yuan(grpc_engine: ThreadEngine, capsys: pytest.CaptureFixture[str]) -> None:
    target = grpc_engine.target
    code, topped, err = _run(target, capsys, "top-up", "--user", "501", "--amount", "100.00")
    assert code == EXIT_OK
    key = topped["idempotency_key"]
    assert f"idempotency key: {key}" in err
    [cash] = [b for b in topped["response"]["wallet"]["balances"] if b["asset"] == "ASSET_CASH"]
    assert (cash["available_fen"], cash["available_yuan"]) == (10_000, "100.00")

    # The same key again is a replay, not a second top-up.
    code, again, _ = _run(target, capsys, "top-up", "--user", "501", "--amount", "100.00", "--key", key)
    assert code == EXIT_OK and again["response"]["replayed"] is True

    assert _run(target, capsys, "grant-points", "--user", "501", "--points", "500")[0] == EXIT_OK
    assert _run(target, capsys, "grant-coins", "--user", "501", "--coins", "300")[0] == EXIT_OK

    order = ["--user", "501", "--order", "A-1", "--merchant", "m-1"]
    code, held, _ = _run(target, capsys, "charge", *order, "--amount", "30.00", "--authorize-only")
    assert code == EXIT_OK and held["response"]["status"] == "CHARGE_STATUS_AUTHORIZED"
    code, captured, _ = _run(
        target, capsys, "capture", "--user", "501", "--order", "A-1", "--amount", "20.00"
    )
    assert code == EXIT_OK
    assert captured["response"]["charge"]["captured_amount_yuan"] == "20.00"

    code, refunded, _ = _run(
        target, capsys, "refund", "--charge", held["response"]["charge_id"], "--amount", "5.00"
    )
    assert code == EXIT_OK
    assert refunded["response"]["charge"]["refunded_amount_fen"] == 500

    code, refused, _ = _run(target, capsys, "refund", "--user", "501", "--order", "A-1", "--amount", "40.00")
    assert code == EXIT_REFUSED
    assert refused["error"]["reason"] == "REFUND_EXCEEDS_CAPTURED"
    assert refused["amounts"]["captured_yuan"] == "20.00"
    assert (
        "refunding 40.00 would pass the 20.00 captured (5.00 already refunded)"
        in refused["error"]["description"]
    )

    code, other, _ = _run(
        target,
        capsys,
        "charge",
        "--user",
        "501",
        "--order",
        "A-2",
        "--merchant",
        "m-1",
        "--amount",
        "1.00",
        "--authorize-only",
    )
    assert (
        _run(target, capsys, "void", "--charge", other["response"]["charge_id"])[1]["response"]["charge"][
            "status"
        ]
        == "CHARGE_STATUS_VOIDED"
    )

    code, shown, _ = _run(
        target, capsys, "show-charge", "--user", "501", "--order", "A-1", "--merchant", "m-1"
    )
    assert code == EXIT_OK and shown["response"]["amount_yuan"] == "30.00"

    code, history, _ = _run(target, capsys, "history", "--user", "501", "--limit", "50")
    kinds = {row["type"] for row in history["response"]}
    assert {"TRANSACTION_TYPE_TOP_UP", "TRANSACTION_TYPE_CAPTURE", "TRANSACTION_TYPE_REFUND"} <= kinds

    with OrderClient(target) as client:
        wallet = client.get_wallet(501)
        assert balance_of(wallet, common_pb2.ASSET_CASH)[0] == 10_000 - 2_000 + 500
        assert balance_of(wallet, common_pb2.ASSET_POINTS)[0] == 500
        assert client.audit().ok


def test_cards_templates_activities_freeze_audit_health(
    grpc_engine: ThreadEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    target = grpc_engine.target
    args = ["sell-card", "--user", "502", "--amount", "50.00", "--channel", "alipay", "--channel-txn", "S-1"]
    code, sold, _ = _run(target, capsys, *args)
    assert code == EXIT_OK
    card = sold["response"]["gift_card"]
    assert (card["balance_fen"], card["balance_yuan"]) == (5_000, "50.00")
    code, promo, _ = _run(target, capsys, "issue-card", "--user", "502", "--amount", "20.00")
    assert code == EXIT_OK
    code, looked, _ = _run(target, capsys, "card", "--code", promo["response"]["gift_card"]["code"])
    assert looked["response"]["balance_yuan"] == "20.00"

    code, template, _ = _run(
        target,
        capsys,
        "create-template",
        "--name",
        "5 off 20",
        "--type",
        "fixed-off",
        "--amount-off",
        "5.00",
        "--min-spend",
        "20.00",
        "--stock",
        "10",
    )
    assert code == EXIT_OK
    template_id = template["response"]["template_id"]
    code, activity, _ = _run(
        target, capsys, "create-activity", "--name", "welcome", "--coupon", template_id, "--points", "100"
    )
    assert code == EXIT_OK and activity["response"]["activity_id"]
    with OrderClient(target) as client:
        granted = client.issue_activity(502, activity["response"]["activity_id"])
        assert len(granted.coupons) == 1

    code, frozen, _ = _run(target, capsys, "freeze", "--user", "502", "--reason", "chargeback")
    assert code == EXIT_OK and frozen["response"]["frozen"] is True
    code, refused, _ = _run(
        target,
        capsys,
        "charge",
        "--user",
        "502",
        "--order",
        "F-1",
        "--merchant",
        "m-1",
        "--amount",
        "1.00",
        "--gift-card",
        card["code"],
    )
    assert code == EXIT_REFUSED and refused["error"]["reason"] == "ACCOUNT_FROZEN"
    assert _run(target, capsys, "unfreeze", "--user", "502", "--reason", "resolved")[0] == EXIT_OK

    code, audit, _ = _run(target, capsys, "audit")
    assert code == EXIT_OK and audit["response"]["ok"] is True
    code, health, _ = _run(target, capsys, "health")
    assert code == EXIT_OK and health["status"] == "SERVING"


def test_refusal_table_mode_is_one_line_in_yuan(
    grpc_engine: ThreadEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--target",
            grpc_engine.target,
            "charge",
            "--user",
            "503",
            "--order",
            "X",
            "--merchant",
            "m",
            "--amount",
            "12.34",
        ]
    )
    assert code == EXIT_REFUSED
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("refused")]
    assert (
        line == "refused: insufficient funds: the cash balance holds less than the 12.34 it would have to pay"
    )


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in (
        ["top-up", "--user", "1", "--amount", "1.005"],
        ["top-up", "--user", "-4", "--amount", "1.00"],
        ["refund", "--amount", "1.00"],
        ["history", "--user", "1", "--limit", "5000"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == EXIT_USAGE
    assert main(["--cert", str(tmp_path / "c.pem"), "health"]) == EXIT_USAGE
    assert main(["--ca", str(tmp_path / "missing.pem"), "health"]) == EXIT_USAGE
    assert "missing.pem" in capsys.readouterr().err


def test_unreachable_engine_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert main(["--target", dead, "--timeout", "1", "--attempts", "1", "health"]) == EXIT_UNREACHABLE
    code = main(["--target", dead, "--timeout", "1", "--attempts", "2", "wallet", "--user", "1"])
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert f"the engine at {dead} did not answer" in err
