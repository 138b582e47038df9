"""Must show 1: the till dies (SIGKILL) after its request was sent and before the answer was
recorded; the next start re-sends it with the same key and the wallet shows exactly one charge."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from clients.order_client import OrderClient, balance_of
from coffer.v1 import common_pb2
from tests.support.engines import REPOSITORY, ThreadEngine


def pos(target: str, journal: Path, *args: str, crash: bool = False) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "COFFER_POS_CRASH_AFTER_SEND"}
    if crash:
        env["COFFER_POS_CRASH_AFTER_SEND"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "clients.pos", "--target", target, "--journal", str(journal), "--json", *args],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def journal_rows(journal: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(journal) as db:
        return list(db.execute("SELECT idempotency_key, state, attempts FROM entries ORDER BY seq"))


def charges_for(client: OrderClient, user_id: int) -> list[common_pb2.Transaction]:
    return [tx for tx in client.iter_transactions(user_id) if tx.type == common_pb2.TRANSACTION_TYPE_CHARGE]


def test_killed_till_resends_its_journaled_charge_once(grpc_engine: ThreadEngine, tmp_path: Path) -> None:
    journal = tmp_path / "till.db"
    user = 4242
    with OrderClient(grpc_engine.target) as client:
        client.issue_top_up(user, 50_000, payment_channel="alipay", channel_txn_id="pos-crash-1")

        killed = pos(
            grpc_engine.target,
            journal,
            "charge",
            "--user",
            str(user),
            "--order",
            "T-1",
            "--merchant",
            "m-till",
            "--amount",
            "150.00",
            crash=True,
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        # The engine applied it, but the till never recorded the answer.
        [(key, state, attempts)] = journal_rows(journal)
        assert (state, attempts) == ("pending", 1)
        assert len(charges_for(client, user)) == 1

        # The next start (any command) re-sends the pending entry with the same key first.
        restarted = pos(grpc_engine.target, journal, "wallet", "--user", str(user))
        assert restarted.returncode == 0, restarted.stderr
        answers = [json.loads(line) for line in restarted.stdout.splitlines()]
        recovered = [answer for answer in answers if answer["recovered"]]
        assert len(recovered) == 1 and recovered[0]["command"] == "charge"
        assert recovered[0]["response"]["replayed"] is True
        assert "re-sending 1 unfinished request" in restarted.stderr
        assert journal_rows(journal) == [(key, "done", 2)]

        charges = charges_for(client, user)
        assert len(charges) == 1
        assert charges[0].idempotency_key == key
        assert balance_of(client.get_wallet(user), common_pb2.ASSET_CASH)[0] == 50_000 - 15_000

        # A third start has nothing left to re-send.
        again = pos(grpc_engine.target, journal, "wallet", "--user", str(user))
        assert again.returncode == 0 and "re-sending" not in again.stderr
        assert len(charges_for(client, user)) == 1
        assert client.audit().ok
