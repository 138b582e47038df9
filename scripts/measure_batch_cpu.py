"""CPU per plain cash charge on a group-commit writer (engine.service.group_commit), with no gRPC:
batches of ``--batch`` charges over ``--users`` users on a throwaway PostgreSQL, run directly by
one shard's writer; prints one JSON line (docs/performance.md "Group commit"): the engine's CPU
and wall time per charge, and the CPU every PostgreSQL process on the machine spent meanwhile.
Run: PYTHONPATH=. .venv/bin/python scripts/measure_batch_cpu.py [--batches 60] [--batch 32] [--alone]"""

import argparse
import json
import os
import time

from engine.domain.commands import ChargeCommand, IssueCommand, TopUpSpec
from engine.domain.money import Asset
from engine.service.charge import charge, charge_joinable
from engine.service.group_commit import PendingWrite, ShardWriter, route_for_user
from engine.service.issue import issue
from tests.support.engines import make_context
from tests.support.servers import PostgresServer

parser = argparse.ArgumentParser()
parser.add_argument("--batches", type=int, default=60)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--users", type=int, default=256)
parser.add_argument(
    "--alone", action="store_true", help="each charge as work run alone (not joined with its neighbours)"
)
args = parser.parse_args()


def postgres_cpu_s() -> float:
    """CPU seconds used so far by every PostgreSQL process on the machine (backends included)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().split(b"\0")[0]
            with open(f"/proc/{pid}/stat") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            continue
        if command.startswith(b"postgres") or command.endswith(b"/postgres"):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


server = PostgresServer.start()
try:
    context = make_context([server.create_database("s0")])
    users = list(range(1, args.users + 1))
    for user in users:
        issue(context, IssueCommand(f"t{user}", user, TopUpSpec(10**9, Asset.CASH, "a", f"t{user}")))
    writer: ShardWriter[int] = ShardWriter(context.router.shards[0], lambda _settled: None)

    def batch(start: int) -> list[PendingWrite[int]]:
        requests = []
        for index in range(start, start + args.batch):
            command = ChargeCommand(f"c{index}", users[index % len(users)], f"o{index}", "m", "", 100)
            joinable = None if args.alone else charge_joinable(context, command, None, lambda result: result)
            requests.append(
                PendingWrite(
                    route_for_user(context, command.user_id),
                    lambda c=command: charge(context, c),
                    index,
                    joinable=joinable,
                )
            )
        return requests

    for warm in range(5):
        writer.run_batch(batch(10**7 + warm * args.batch))
    wall, cpu, database_cpu = time.perf_counter(), time.process_time(), postgres_cpu_s()
    for number in range(args.batches):
        requests = batch(number * args.batch)
        writer.run_batch(requests)
        assert all(request.error is None for request in requests), [r.error for r in requests][:3]
    charges = args.batches * args.batch
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    database_cpu = postgres_cpu_s() - database_cpu
    writer.stop()
    print(
        json.dumps(
            {
                "charges": charges,
                "joined": not args.alone,
                "cpu_us_per_charge": round(cpu / charges * 1e6, 1),
                "wall_us_per_charge": round(wall / charges * 1e6, 1),
                "postgres_cpu_us_per_charge": round(database_cpu / charges * 1e6, 1),
            }
        )
    )
finally:
    server.stop()
