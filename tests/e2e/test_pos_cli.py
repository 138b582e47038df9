"""The POS CLI: exact amounts, journaled commands, refusals, an unreachable engine, till redemptions."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from clients.errors import UnimplementedError
from clients.money import AmountError, format_fen, parse_amount, parse_units
from clients.order_client import OrderClient, balance_of
from clients.pos.cli import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, fold_key, main
from clients.pos.journal import Journal, JournalBusy
from coffer.v1 import admin_pb2, common_pb2
from tests.support.engines import ThreadEngine
from tests.support.servers import free_port


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("150.00", 15_000),
        ("150", 15_000),
        ("0.01", 1),
        ("1.5", 150),
        ("1.000", 100),
        ("100000000000.00", 10**13),
    ],
)
def test_amounts_convert_exactly_to_fen(text: str, fen: int) -> None:
    assert parse_amount(text) == fen


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1.005", "fraction of a fen"),
        ("-3", "negative"),
        ("abc", "not an amount"),
        ("1e3", "not an amount"),
        ("NaN", "not an amount"),
        ("0.00", "zero"),
        ("100000000000.01", "above the limit"),
        ("1" * 40, "not an amount"),
    ],
)
def test_bad_amounts_are_refused_with_a_reason(text: str, problem: str) -> None:
    with pytest.raises(AmountError, match=problem):
        parse_amount(text)


def test_units_and_formatting() -> None:
    assert parse_units("500") == 500
    with pytest.raises(AmountError):
        parse_units("1.5")
    assert format_fen(15_000) == "150.00"
    assert format_fen(123_456_789) == "1,234,567.89"
    assert format_fen(-5) == "-0.05"


@pytest.mark.parametrize("amount", ["1.005", "-3", "abc", "100000000000.01"])
def test_cli_refuses_bad_amounts_with_exit_code_2(
    amount: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--journal", str(tmp_path / "j.db"), "charge", "--user", "1", "--order", "o", "--merchant", "m"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--amount", amount])
    assert exited.value.code == EXIT_USAGE
    assert "argument --amount" in capsys.readouterr().err
    assert not (tmp_path / "j.db").exists() or _rows(tmp_path / "j.db") == []


def _rows(journal: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(journal) as db:
        return list(db.execute("SELECT command, state, reason FROM entries ORDER BY seq"))


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_charge_refund_wallet_and_refusal(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "till.db"
    base = ["--target", grpc_engine.target, "--journal", str(journal), "--json"]
    order = ["--user", "77", "--merchant", "m-1"]
    with OrderClient(grpc_engine.target) as client:
        client.issue_top_up(77, 100_000, payment_channel="wechat", channel_txn_id="pos-cli-1")
        client.issue_points(77, 2_000)

        code = main([*base, "charge", *order, "--order", "A-1", "--amount", "150.00"])
        assert code == EXIT_OK
        [charged] = _json_lines(capsys.readouterr().out)
        charge_id = charged["response"]["charge_id"]  # type: ignore[index]

        code = main([*base, "refund", "--charge", str(charge_id), "--amount", "20.50", "--reason", "damaged"])
        assert code == EXIT_OK
        [refunded] = _json_lines(capsys.readouterr().out)
        assert refunded["response"]["charge"]["refunded_amount_fen"] == 2050  # type: ignore[index]

        code = main([*base, "charge", *order, "--order", "A-2", "--amount", "9999.00"])
        assert code == EXIT_REFUSED
        [refused] = _json_lines(capsys.readouterr().out)
        assert refused["error"]["reason"] == "INSUFFICIENT_FUNDS"  # type: ignore[index]

        assert main([*base, "wallet", "--user", "77"]) == EXIT_OK
        [wallet] = _json_lines(capsys.readouterr().out)
        assert wallet["command"] == "wallet"

        assert balance_of(client.get_wallet(77), common_pb2.ASSET_CASH)[0] == 100_000 - 15_000 + 2_050
        assert _rows(journal) == [
            ("charge", "done", ""),
            ("refund", "done", ""),
            ("charge", "refused", "INSUFFICIENT_FUNDS"),
        ]
        # The tables render too (no --json).
        assert (
            main(["--target", grpc_engine.target, "--journal", str(journal), "wallet", "--user", "77"]) == 0
        )
        assert "CASH" in capsys.readouterr().out
        assert client.audit().ok


def test_unreachable_engine_keeps_the_request_for_the_next_start(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "till.db"
    with OrderClient(grpc_engine.target) as client:
        client.issue_top_up(78, 10_000, payment_channel="wechat", channel_txn_id="pos-cli-2")
        dead = f"127.0.0.1:{free_port()}"
        args = ["charge", "--user", "78", "--order", "B-1", "--merchant", "m-1", "--amount", "12.34"]
        code = main(["--target", dead, "--journal", str(journal), "--attempts", "2", "--timeout", "1", *args])
        assert code == EXIT_UNREACHABLE
        assert "re-sent on the next start" in capsys.readouterr().err
        assert _rows(journal) == [("charge", "pending", "")]

        code = main(
            ["--target", grpc_engine.target, "--journal", str(journal), "--json", "wallet", "--user", "78"]
        )
        assert code == EXIT_OK
        captured = capsys.readouterr()
        recovered, wallet = _json_lines(captured.out)
        assert wallet["command"] == "wallet"
        assert recovered["recovered"] is True and recovered["response"]["replayed"] is False  # type: ignore[index]
        assert _rows(journal) == [("charge", "done", "")]
        assert balance_of(client.get_wallet(78), common_pb2.ASSET_CASH)[0] == 10_000 - 1_234


def test_one_journal_one_till(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db"), pytest.raises(JournalBusy):
        Journal(tmp_path / "j.db")


def test_gift_card_balance_and_till_redemption(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", grpc_engine.target, "--journal", str(tmp_path / "till.db"), "--json"]
    with OrderClient(grpc_engine.target) as client:
        try:
            issued = client.issue_gift_card(79, 30_000, payment_channel="alipay", channel_txn_id="pos-gc-1")
        except UnimplementedError:
            pytest.skip("this engine does not issue gift cards yet")
        code = issued.gift_card.code

        assert main([*base, "balance", "--card", code]) == EXIT_OK
        [balance] = _json_lines(capsys.readouterr().out)
        assert balance["response"]["balance_fen"] == 30000  # type: ignore[index]

        till = ["--code", code, "--merchant", "m-9"]
        assert main([*base, "redeem-card", *till, "--amount", "120.00"]) == EXIT_OK
        [redeemed] = _json_lines(capsys.readouterr().out)
        transaction_id = redeemed["response"]["transaction_id"]  # type: ignore[index]

        assert main([*base, "redeem-card", *till, "--amount", "500.00"]) == EXIT_REFUSED
        assert _json_lines(capsys.readouterr().out)[0]["error"]["reason"] == "INSUFFICIENT_FUNDS"  # type: ignore[index]

        assert main([*base, "refund", "--charge", str(transaction_id), "--amount", "20.00"]) == EXIT_OK
        capsys.readouterr()
        assert client.get_gift_card(code).balance == 30_000 - 12_000 + 2_000
        assert client.audit().ok


def test_coupon_code_redemption(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", grpc_engine.target, "--journal", str(tmp_path / "till.db"), "--json"]
    with OrderClient(grpc_engine.target) as client:
        template = admin_pb2.CreateCouponTemplateRequest(
            name="till 20 off 100",
            type=common_pb2.COUPON_TYPE_FIXED_OFF,
            amount_off=2_000,
            min_spend=10_000,
            total_stock=10,
            per_user_limit=1,
            valid_days_after_claim=7,
        )
        try:
            template_id = client.create_coupon_template(template).template_id
            claimed = client.issue_coupon(80, template_id)
        except UnimplementedError:
            pytest.skip("this engine does not serve coupons yet")
        coupon_code = claimed.coupons[0].code

        args = ["redeem-coupon", "--code", coupon_code, "--merchant", "m-3"]
        assert main([*base, *args, "--amount", "99.99"]) == EXIT_REFUSED
        assert _json_lines(capsys.readouterr().out)[0]["error"]["reason"] == "MIN_SPEND_NOT_MET"  # type: ignore[index]
        assert main([*base, *args, "--amount", "150.00"]) == EXIT_OK
        [redeemed] = _json_lines(capsys.readouterr().out)
        assert redeemed["response"]["discount_fen"] == 2000  # type: ignore[index]
        assert main([*base, *args, "--amount", "150.00"]) == EXIT_REFUSED
        assert _json_lines(capsys.readouterr().out)[0]["error"]["reason"] == "COUPON_ALREADY_USED"  # type: ignore[index]
        assert client.audit().ok


def test_refusals_are_worded_in_yuan_with_the_instrument(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = ["--target", grpc_engine.target, "--journal", str(tmp_path / "till.db")]
    as_json = [*table, "--json"]
    with OrderClient(grpc_engine.target) as client:
        client.issue_top_up(81, 10_000, payment_channel="wechat", channel_txn_id="pos-yuan-1")
        card = client.issue_gift_card(
            81, 3_000, payment_channel="alipay", channel_txn_id="pos-yuan-2"
        ).gift_card
    charge = ["charge", "--user", "81", "--merchant", "m-1", "--order", "Y-1", "--amount", "50.00"]
    assert main([*as_json, *charge]) == EXIT_OK
    charge_id = _json_lines(capsys.readouterr().out)[0]["response"]["charge_id"]  # type: ignore[index]

    # A refused refund: the amounts in yuan, in the table mode's one line and in --json.
    assert main([*table, "refund", "--charge", str(charge_id), "--amount", "60.00"]) == EXIT_REFUSED
    err = capsys.readouterr().err
    assert "refunding 60.00 would pass the 50.00 captured" in err
    assert "6000" not in err and "5000" not in err
    assert main([*as_json, "refund", "--charge", str(charge_id), "--amount", "60.00"]) == EXIT_REFUSED
    [refused] = _json_lines(capsys.readouterr().out)
    assert refused["amounts"] == {  # type: ignore[comparison-overlap]
        "captured_fen": 5000,
        "captured_yuan": "50.00",
        "refunded_fen": 0,
        "refunded_yuan": "0.00",
    }

    # A gift-card shortfall names the card and its code, not the cash balance.
    redeem = ["redeem-card", "--code", card.code, "--merchant", "m-2", "--amount", "45.00"]
    assert main([*table, *redeem]) == EXIT_REFUSED
    [line] = [text for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert line == f"refused: insufficient funds: gift card {card.code} holds less than 45.00"
    assert main([*as_json, *redeem]) == EXIT_REFUSED
    [short] = _json_lines(capsys.readouterr().out)
    assert short["metadata"]["instrument"] == "GIFT_CARD"  # type: ignore[index]
    assert short["amounts"] == {"needed_fen": 4500, "needed_yuan": "45.00"}  # type: ignore[comparison-overlap]

    # Legs say where the value came from, balances what is left.
    assert (
        main(
            [
                *table,
                "charge",
                "--user",
                "81",
                "--merchant",
                "m-1",
                "--order",
                "Y-2",
                "--amount",
                "10.00",
                "--gift-card",
                card.code,
            ]
        )
        == EXIT_OK
    )
    out = capsys.readouterr().out
    assert f"paid from gift card {card.code}" in out
    assert "paid from cash balance" in out and "cash balance left" in out


def test_json_carries_fen_and_yuan(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", grpc_engine.target, "--journal", str(tmp_path / "till.db"), "--json"]
    with OrderClient(grpc_engine.target) as client:
        client.issue_top_up(82, 10_000, payment_channel="wechat", channel_txn_id="pos-json-1")
        client.issue_points(82, 1_000)
    args = [
        "charge",
        "--user",
        "82",
        "--merchant",
        "m-1",
        "--order",
        "J-1",
        "--amount",
        "30.00",
        "--points",
        "500",
    ]
    assert main([*base, *args]) == EXIT_OK
    [charged] = _json_lines(capsys.readouterr().out)
    breakdown = charged["response"]["breakdown"]  # type: ignore[index]
    assert (breakdown["cash_amount_fen"], breakdown["cash_amount_yuan"]) == (2500, "25.00")
    assert (breakdown["points_value_fen"], breakdown["points_value_yuan"]) == (500, "5.00")
    assert breakdown["points_used"] == 500 and "cash_amount" not in breakdown
    balances = {row["asset"]: row for row in charged["response"]["wallet"]["balances"]}  # type: ignore[index]
    assert balances["ASSET_CASH"]["available_yuan"] == "75.00"
    assert balances["ASSET_POINTS"]["available"] == 500 and "available_yuan" not in balances["ASSET_POINTS"]


def test_sell_card_issues_a_card_whose_balance_matches(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--target", grpc_engine.target, "--journal", str(tmp_path / "till.db"), "--json"]
    sell = ["sell-card", "--amount", "100.00", "--user", "42", "--channel", "alipay", "--channel-txn", "T1"]
    assert main([*base, *sell]) == EXIT_OK
    [sold] = _json_lines(capsys.readouterr().out)
    card = sold["response"]["gift_card"]  # type: ignore[index]
    assert (card["balance_fen"], card["balance_yuan"]) == (10_000, "100.00")
    assert main([*base, "balance", "--card", card["code"]]) == EXIT_OK
    [balance] = _json_lines(capsys.readouterr().out)
    assert balance["response"]["balance_yuan"] == "100.00"  # type: ignore[index]
    assert balance["response"]["user_id"] == 42  # type: ignore[index]
    # The channel's callback re-sent under a new key is the same sale, not a second card.
    assert main([*base, *sell]) == EXIT_OK
    [again] = _json_lines(capsys.readouterr().out)
    assert again["response"]["gift_card"]["code"] == card["code"]  # type: ignore[index]
    assert again["response"]["replayed"] is True  # type: ignore[index]
    with OrderClient(grpc_engine.target) as client:
        assert client.get_gift_card(card["code"]).balance == 10_000
        assert client.audit().ok


def test_journal_keys_fold_onto_one_line_at_120_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    journal_path = tmp_path / "till.db"
    key = "pos-cashier-terminal-07-" + "0123456789abcdef" * 2
    with Journal(journal_path) as journal:
        journal.record(
            idempotency_key=key,
            rpc="TransactionEngine.Refund",
            command="refund",
            summary="ch_1a01m8sqya5m4fe0vcxscq 20.00",
            request=b"",
        )
    assert main(["--journal", str(journal_path), "journal"]) == EXIT_OK
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "refund" in line]
    assert len(rows) == 1 and fold_key(key) in rows[0]
    assert max(len(line) for line in out.splitlines()) <= 120
    assert len(fold_key(key)) <= 22 and fold_key("short-key") == "short-key"
    assert main(["--journal", str(journal_path), "journal", "--full-keys"]) == EXIT_OK
    assert "…" not in capsys.readouterr().out
