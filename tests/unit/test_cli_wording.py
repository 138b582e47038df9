"""The command lines' edge: refusals worded in yuan from ErrorInfo metadata (never from the fen
in the engine's message), and ``--json`` money as fen integers beside yuan strings."""

from __future__ import annotations

import grpc
import pytest

from clients._cli import describe_refusal, message_json, refusal_json
from clients.errors import CofferError, error_class
from clients.money import format_fen, yuan_text
from coffer.v1 import common_pb2, engine_pb2


def _refusal(reason: str, message: str, **metadata: str) -> CofferError:
    cls = error_class(reason, grpc.StatusCode.FAILED_PRECONDITION)
    return cls(reason, message, code=grpc.StatusCode.FAILED_PRECONDITION, metadata=metadata)


@pytest.mark.parametrize(
    ("error", "requested_fen", "line"),
    [
        (
            _refusal("INSUFFICIENT_FUNDS", "not enough CASH for 123456", asset="CASH", needed="123456"),
            None,
            "insufficient funds: the cash balance holds less than the 1,234.56 it would have to pay",
        ),
        (
            _refusal(
                "INSUFFICIENT_FUNDS",
                "gift card X does not hold 4500",
                asset="CASH",
                instrument="GIFT_CARD",
                code="7XK9-B2T4",
                needed="4500",
            ),
            4500,
            "insufficient funds: gift card 7XK9-B2T4 holds less than 45.00",
        ),
        (
            _refusal("INSUFFICIENT_FUNDS", "not enough POINTS for 800", asset="POINTS", needed="800"),
            None,
            "insufficient funds: fewer than 800 points are available",
        ),
        (
            _refusal("INSUFFICIENT_FUNDS", "not enough COINS for 30", asset="COINS", needed="30"),
            None,
            "insufficient funds: fewer than 30 coins are available",
        ),
        (
            _refusal(
                "REFUND_EXCEEDS_CAPTURED",
                "refunding 4000 would pass the 5000 captured on ch_1",
                charge_id="ch_1",
                captured="5000",
                refunded="0",
                field="amount",
            ),
            4000,
            "refund exceeds captured: refunding 40.00 would pass the 50.00 captured",
        ),
        (
            _refusal(
                "CAPTURE_EXCEEDS_AUTHORIZED",
                "capturing 900 would pass the 800 authorized on ch_1",
                charge_id="ch_1",
                authorized="800",
                field="amount",
            ),
            900,
            "capture exceeds authorized: capturing 9.00 would pass the 8.00 authorized",
        ),
        (
            _refusal(
                "POINTS_LIMIT_EXCEEDED",
                "points worth 9000 fen pass the per-order cap of 5000 fen",
                field="points",
                asset="POINTS",
                cap_fen="5000",
            ),
            None,
            "points limit exceeded: points worth more than 50.00 pass the per-order cap",
        ),
        (
            _refusal(
                "MIN_SPEND_NOT_MET",
                "coupon cp_1: the in-scope items total 9999, below 10000",
                coupon_id="cp_1",
                field="coupon_ids",
            ),
            None,
            "min spend not met: coupon cp_1: the order does not reach the minimum spend",
        ),
        (
            _refusal("ACCOUNT_FROZEN", "the wallet of user 7 is frozen", user_id="7"),
            None,
            "account frozen: the wallet of user 7 is frozen",
        ),
    ],
)
def test_refusals_are_one_line_in_yuan(error: CofferError, requested_fen: int | None, line: str) -> None:
    worded = describe_refusal(error, requested_fen=requested_fen)
    assert worded == line
    assert "\n" not in worded


def test_refusal_json_converts_metadata_amounts() -> None:
    error = _refusal("REFUND_EXCEEDS_CAPTURED", "...", captured="5000", refunded="1000", charge_id="ch_1")
    body = refusal_json("refund", error, requested_fen=4500)
    assert body["amounts"] == {
        "captured_fen": 5000,
        "captured_yuan": "50.00",
        "refunded_fen": 1000,
        "refunded_yuan": "10.00",
    }
    assert body["metadata"]["captured"] == "5000"
    points = _refusal("INSUFFICIENT_FUNDS", "...", asset="POINTS", needed="800")
    assert refusal_json("charge", points)["amounts"] == {}


def test_json_money_fields_carry_both_units() -> None:
    response = engine_pb2.ChargeResponse(
        charge_id="ch_1",
        breakdown=common_pb2.Breakdown(cash_amount=3000, points_used=500, points_value=500),
        wallet=common_pb2.Wallet(
            user_id=42,
            balances=[
                common_pb2.Balance(asset=common_pb2.ASSET_CASH, available=7000),
                common_pb2.Balance(asset=common_pb2.ASSET_POINTS, available=1500),
            ],
        ),
    )
    body = message_json(response)
    assert body["breakdown"]["cash_amount_fen"] == 3000 and body["breakdown"]["cash_amount_yuan"] == "30.00"
    assert body["breakdown"]["points_used"] == 500
    cash, points = body["wallet"]["balances"]
    assert (cash["available_fen"], cash["available_yuan"]) == (7000, "70.00")
    assert points["available"] == 1500 and "available_fen" not in points
    assert body["wallet"]["user_id"] == 42


def test_yuan_text_parses_back() -> None:
    assert yuan_text(123_456_789) == "1234567.89" and format_fen(123_456_789) == "1,234,567.89"
    assert yuan_text(-5) == "-0.05" and yuan_text(0) == "0.00"
