"""``make bench-bulk``: a points campaign to a million users through ``IssueBatch``, next to
PostgreSQL's own TPC-B, on one throwaway PostgreSQL (the helpers of clients/bench.py and
clients/loadtest/local.py).

1. pgbench TPC-B exactly as ``make bench`` runs it: ``pgbench_tps``;
2. the engine (``python server.py``) on 2 shard databases of the same cluster; the campaign CLI's
   code path (:func:`clients.campaign.run_campaign`, several concurrent calls) grants 100 points
   to each of ``--users`` users: ``grants_per_s``;
3. ``Admin.Audit``;
4. the whole campaign again: every item must come back replayed, and the sum of balances and
   the ledger's entry count must not move (``replay_changed`` counts what did).

The LAST line printed is one JSON object: ``grants``, ``seconds``, ``grants_per_s``,
``pgbench_tps``, ``ratio_vs_pgbench`` (grants_per_s / pgbench_tps), ``replay_seconds``,
``replayed``, ``replay_changed`` (0), ``audit``. Exit code 0 when the audit is ok, nothing was
refused and the replay changed nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clients._transport import Transport
from clients.bench import audit_verdict, pgbench
from clients.campaign import CampaignSummary, run_campaign
from clients.loadtest.local import engine_process, postgres_cluster
from clients.loadtest.preload import count_entries
from coffer.v1 import admin_pb2

DEFAULT_USERS = 1_000_000
POINTS = 100
#: Users get ids from here up, spread evenly over the virtual (and so the physical) shards.
FIRST_USER_ID = 1_000_000
AUDIT_TIMEOUT_SECONDS = 600.0
#: Shard databases the campaign is spread over (as make bench-bulk has always measured it).
BULK_SHARDS = 2


def balances_total(dsns: Sequence[str]) -> int:
    """The sum of every balance (available + held, every asset) over the shards."""
    total = 0
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as connection:
            row = connection.execute("SELECT COALESCE(SUM(available + held), 0) FROM balances").fetchone()
            total += int(row[0]) if row else 0
    return total


def _campaign(
    transport: Transport, users: Sequence[int], args: argparse.Namespace, console: Console, label: str
) -> tuple[CampaignSummary, float]:
    progress = Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    with progress:
        task = progress.add_task(label, total=len(users))
        started = time.perf_counter()
        summary = run_campaign(
            transport,
            users,
            campaign_id=args.campaign_id,
            points=POINTS,
            reason="bench-bulk",
            batch_items=args.batch,
            concurrency=args.concurrency,
            on_progress=lambda done: progress.advance(task, done),
        )
        seconds = time.perf_counter() - started
    return summary, seconds


def _audit(transport: Transport) -> dict[str, Any]:
    report = transport.send("Admin.Audit", admin_pb2.AuditRequest(), timeout=AUDIT_TIMEOUT_SECONDS)
    return {
        "audit": {
            "ok": report.ok,
            "shards": [
                {
                    "shard": shard.shard,
                    "violations": [{"invariant": violation.invariant} for violation in shard.violations],
                }
                for shard in report.shards
            ],
        }
    }


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    line: dict[str, Any] = {}
    users = list(range(FIRST_USER_ID, FIRST_USER_ID + args.users))
    with postgres_cluster() as postgres:
        names = [f"bulk_shard{index}" for index in range(BULK_SHARDS)]
        shards = [postgres.create_database(name) for name in names]
        dsns = [postgres.dsn(name) for name in names]
        postgres.create_database("bulk_pgbench")
        line["pgbench_tps"] = round(pgbench(postgres, "bulk_pgbench", console)["tps"], 1)
        with (
            engine_process(
                shards, args.reports_dir / "engine-bench-bulk.log", workers=args.workers, threads=args.threads
            ) as engine,
            Transport(engine.target, connections=args.connections) as transport,
        ):
            granted, seconds = _campaign(transport, users, args, console, "campaign")
            line["grants"] = granted.granted
            line["refused"] = dict(granted.refused)
            line["seconds"] = round(seconds, 2)
            line["grants_per_s"] = round(granted.granted / seconds, 1) if seconds else 0.0
            console.print("running Admin.Audit (CONTRACT §8) ...")
            line["audit"] = audit_verdict(_audit(transport))
            entries, total = count_entries(dsns), balances_total(dsns)
            replay, replay_seconds = _campaign(transport, users, args, console, "replay")
            changed = int(count_entries(dsns) != entries) + int(balances_total(dsns) != total)
            changed += replay.granted + sum(replay.refused.values())
            line["replayed"] = replay.replayed
            line["replay_seconds"] = round(replay_seconds, 2)
            line["replay_changed"] = changed
            line["ledger_entries"] = entries
    line["ratio_vs_pgbench"] = (
        round(line["grants_per_s"] / line["pgbench_tps"], 3) if line["pgbench_tps"] else 0.0
    )
    return line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clients.bench_bulk", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="users the campaign grants to")
    parser.add_argument("--batch", type=int, default=5_000, help="items per IssueBatch call")
    parser.add_argument("--concurrency", type=int, default=4, help="IssueBatch calls in flight")
    parser.add_argument(
        "--connections",
        type=int,
        default=4,
        help="connections to the engine (the kernel spreads connections, not calls, over its processes)",
    )
    parser.add_argument("--workers", type=int, default=2, help="engine processes (COFFER_WORKERS)")
    parser.add_argument("--threads", type=int, default=4, help="threads and connections per engine process")
    parser.add_argument("--campaign-id", default="bench-bulk", help="the campaign's id (its keys)")
    parser.add_argument("--reports-dir", type=Path, default=Path(tempfile.gettempdir()) / "coffer-bench")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    line = run(args, console)
    print(json.dumps(line, sort_keys=True))
    ok = line["audit"] == "ok" and not line["refused"] and line["replay_changed"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
