"""``make bench``: how the engine's charge path compares with PostgreSQL's own TPC-B on the same
throwaway cluster.

1. start a throwaway PostgreSQL; create 2 shard databases and a pgbench database;
2. ``pgbench -i -s 10``, then pgbench's built-in TPC-B ``-c 8 -j 2 -T 20 -M prepared``;
3. start the engine (``python server.py``) on the 2 shard databases, sampling its VmRSS;
4. run the harness's charge-only mix at 64 concurrent callers for 20 s, then ``Admin.Audit``;
5. print, as the LAST line, one JSON object:
   ``charge_rps`` (successful charges per second), ``charge_p50_ms``, ``charge_p99_ms``,
   ``pgbench_tps``, ``ratio_vs_pgbench`` (= charge_rps / pgbench_tps), ``engine_rss_mb_max``,
   ``audit`` ("ok" or what failed), and a few more fields for context.

Exit code 0 when the audit is ok and the harness met no unexpected error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from clients.loadtest.config import CHARGE_ONLY_MIX, LoadConfig, parse_mix
from clients.loadtest.local import RssSampler, engine_process, postgres_cluster
from clients.loadtest.runner import REPORT_WIDTH, run

PGBENCH_SCALE = 10
PGBENCH_ARGS = ("-c", "8", "-j", "2", "-T", "20", "-M", "prepared")
PGBENCH_TIMEOUT_SECONDS = 600
_TPS = re.compile(r"^tps = ([0-9.]+) \((?:without|excluding) initial connection", re.MULTILINE)
_TPS_ANY = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)


def pgbench(postgres: Any, database: str, console: Console) -> dict[str, float]:
    from tests.support.servers import postgres_bin

    binary = postgres_bin("pgbench")
    connection = ["-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres"]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    console.print(f"pgbench -i -s {PGBENCH_SCALE} ...")
    subprocess.run(
        [binary, "-i", "-q", "-s", str(PGBENCH_SCALE), *connection, database],
        check=True,
        capture_output=True,
        env=env,
        timeout=PGBENCH_TIMEOUT_SECONDS,
    )
    console.print(f"pgbench TPC-B {' '.join(PGBENCH_ARGS)} ...")
    result = subprocess.run(
        [binary, *PGBENCH_ARGS, *connection, database],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=PGBENCH_TIMEOUT_SECONDS,
    )
    match = _TPS.search(result.stdout) or _TPS_ANY.search(result.stdout)
    if match is None:
        raise RuntimeError(f"could not read pgbench's tps from:\n{result.stdout}")
    latency = _LATENCY.search(result.stdout)
    return {"tps": float(match.group(1)), "latency_ms": float(latency.group(1)) if latency else 0.0}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of charges (default 20)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent callers (default 64)")
    parser.add_argument("--users", type=int, default=256, help="users to seed (default 256)")
    parser.add_argument(
        "--workers", type=int, default=2, help="engine processes (COFFER_WORKERS; default 2, one per core)"
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads and connections per engine process (default 8)"
    )
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=REPORT_WIDTH)
    reports: Path = args.reports_dir
    line: dict[str, Any] = {
        "charge_rps": 0.0,
        "charge_p50_ms": 0.0,
        "charge_p99_ms": 0.0,
        "pgbench_tps": 0.0,
        "ratio_vs_pgbench": 0.0,
        "engine_rss_mb_max": 0.0,
        "audit": "not run",
    }
    ok = False
    began = time.monotonic()
    try:
        with postgres_cluster() as postgres:
            shards = [postgres.create_database(f"bench_shard{index}") for index in range(2)]
            postgres.create_database("bench_pgbench")
            measured = pgbench(postgres, "bench_pgbench", console)
            line["pgbench_tps"] = round(measured["tps"], 1)
            line["pgbench_latency_ms"] = measured["latency_ms"]
            with engine_process(
                shards, reports / "engine-bench.log", workers=args.workers, threads=args.threads
            ) as engine:
                config = LoadConfig(
                    target=engine.target,
                    users=args.users,
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    mix=parse_mix(CHARGE_ONLY_MIX),
                    progress=console.is_terminal,
                )
                with RssSampler(engine.process.pid) as rss:
                    result = run(
                        config,
                        report_path=reports / "bench-harness.json",
                        chart_path=reports / "bench-latency.html",
                        console=console,
                    )
            report = result.report
            charge = report.get("rpcs", {}).get("Charge", {})
            line["charge_rps"] = charge.get("ok_rps", 0.0)
            line["charge_p50_ms"] = charge.get("p50_ms", 0.0)
            line["charge_p95_ms"] = charge.get("p95_ms", 0.0)
            line["charge_p99_ms"] = charge.get("p99_ms", 0.0)
            line["charge_calls"] = charge.get("measured_calls", 0)
            line["charge_refused"] = charge.get("refused_or_failed", 0)
            line["engine_rss_mb_max"] = round(rss.max_mb, 1)
            if line["pgbench_tps"]:
                line["ratio_vs_pgbench"] = round(line["charge_rps"] / line["pgbench_tps"], 4)
            audit = report.get("audit", {})
            if audit.get("ok"):
                line["audit"] = "ok"
            elif "error" in audit:
                line["audit"] = f"audit call failed: {audit['error']}"
            else:
                broken = [
                    f"shard {shard['shard']}: {violation['invariant']}"
                    for shard in audit.get("shards", [])
                    for violation in shard.get("violations", [])
                ]
                line["audit"] = "; ".join(broken) or "not ok"
            line["harness_ok"] = result.ok
            if not result.ok:
                line["failures"] = report.get("failures", [])
            ok = result.ok and line["audit"] == "ok"
    except Exception as error:
        line["error"] = f"{type(error).__name__}: {error}"
        console.print(f"[bold red]bench failed: {line['error']}[/bold red]")
    line.update(
        {
            "concurrency": args.concurrency,
            "workers": args.workers,
            "threads": args.threads,
            "duration_s": args.duration,
            "users": args.users,
            "mix": CHARGE_ONLY_MIX,
            "pgbench": f"TPC-B scale {PGBENCH_SCALE} {' '.join(PGBENCH_ARGS)}",
            "cpus": os.cpu_count(),
            "bench_seconds": round(time.monotonic() - began, 1),
        }
    )
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
