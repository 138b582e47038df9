"""IssueBatch over gRPC, and the campaign CLI on top of it (docs/bulk.md, docs/clients.md)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from clients import campaign
from clients._transport import Transport
from coffer.v1 import admin_pb2, common_pb2, engine_pb2
from tests.support.engines import ThreadEngine
from tests.support.grpc_errors import details_of


def grant(key: str, user_id: int, points: int = 100, **fields: object) -> engine_pb2.IssueRequest:
    return engine_pb2.IssueRequest(
        idempotency_key=key,
        user_id=user_id,
        points=engine_pb2.PointsGrant(points=points, reason="campaign"),
        **fields,  # type: ignore[arg-type]
    )


def points_of(engine: ThreadEngine, user_id: int) -> int:
    wallet = engine.engine.GetWallet(engine_pb2.GetWalletRequest(user_id=user_id))
    return sum(balance.available for balance in wallet.balances if balance.asset == common_pb2.ASSET_POINTS)


def test_each_item_gets_its_own_result_in_order(grpc_engine: ThreadEngine) -> None:
    engine = grpc_engine
    engine.engine.Issue(grant("earlier", 11, 5))
    engine.admin.FreezeAccount(
        admin_pb2.FreezeAccountRequest(idempotency_key="f1", user_id=13, reason="risk")
    )
    items = [
        grant("a", 10),  # shard 0
        grant("b", 11),  # shard 1
        grant("earlier", 11, 5),  # a replay
        grant("earlier", 11, 6),  # the key with another payload
        grant("c", 12, 0),  # invalid
        engine_pb2.IssueRequest(idempotency_key="d", user_id=12),  # no kind
        grant("e", 12, currency="USD"),  # another currency
        grant("f", 13),  # a frozen wallet still receives credits
        grant("g", 10, 7),  # the same user again
    ]
    response = engine.engine.IssueBatch(engine_pb2.IssueBatchRequest(items=items))
    results = response.results
    assert [result.index for result in results] == list(range(len(items)))
    assert [result.error.reason for result in results] == [
        "",
        "",
        "",
        "IDEMPOTENCY_KEY_REUSED",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "",
        "",
    ]
    assert results[3].error.code == "ALREADY_EXISTS"
    assert results[4].error.metadata["field"] == "points.points"
    assert results[6].error.metadata["field"] == "currency"
    assert [result.replayed for result in results] == [False, False, True] + [False] * 6
    assert all(result.transaction_id for result in results if not result.HasField("error"))
    assert (points_of(engine, 10), points_of(engine, 11), points_of(engine, 13)) == (107, 105, 100)
    assert engine.admin.Audit(admin_pb2.AuditRequest()).ok


def test_an_empty_or_oversized_batch_is_refused_as_a_whole(grpc_engine: ThreadEngine) -> None:
    with pytest.raises(grpc.RpcError) as empty:
        grpc_engine.engine.IssueBatch(engine_pb2.IssueBatchRequest())
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(empty.value).reason == "INVALID_ARGUMENT"
    items = [grant(f"k{index}", 100 + index) for index in range(10_001)]
    with pytest.raises(grpc.RpcError) as oversized:
        grpc_engine.engine.IssueBatch(engine_pb2.IssueBatchRequest(items=items), timeout=60)
    assert oversized.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert points_of(grpc_engine, 100) == 0


def test_the_campaign_cli_run_twice_grants_once(
    grpc_engine: ThreadEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users.txt"
    users.write_text("# campaign users\n" + "\n".join(str(user) for user in range(500, 620)) + "\n")
    arguments = [
        "grant-points",
        "--users",
        str(users),
        "--points",
        "100",
        "--batch",
        "50",
        "--target",
        grpc_engine.target,
        "--campaign-id",
        "spring",
    ]
    assert campaign.main(arguments) == 0
    first = capsys.readouterr().err
    assert campaign.main(arguments) == 0
    second = capsys.readouterr().err
    assert "granted" in first and "120" in first
    assert all(points_of(grpc_engine, user) == 100 for user in (500, 561, 619))
    summary_rows = [row for row in second.splitlines() if "granted" in row or "replayed" in row]
    assert any("replayed" in row and "120" in row for row in summary_rows)
    assert grpc_engine.admin.Audit(admin_pb2.AuditRequest()).ok
    # A refused item makes the run fail: a points grant of 0 is invalid.
    assert campaign.main([*arguments[:4], "0", *arguments[5:]]) == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_the_campaign_library_counts_each_outcome(grpc_engine: ThreadEngine) -> None:
    with Transport(grpc_engine.target) as transport:
        first = campaign.run_campaign(
            transport, list(range(700, 730)), campaign_id="c1", points=5, batch_items=7
        )
        again = campaign.run_campaign(
            transport, list(range(700, 740)), campaign_id="c1", points=5, batch_items=9
        )
    assert (first.granted, first.replayed, first.ok) == (30, 0, True)
    assert (again.granted, again.replayed, again.ok) == (10, 30, True)
